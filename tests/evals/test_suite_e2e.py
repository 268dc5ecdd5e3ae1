"""All five benchmarks through run_suite on fixtures with a tiny random model (one process)."""
import json
from pathlib import Path

import pytest

from evals import prepare_benchmark, run_suite

FIXTURES = Path(__file__).parent / "fixtures"


def test_all_five_benchmarks_end_to_end(tmp_path, cache_dir, tiny_lm):
    gsm_rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"}
                for i in range(4)]
    (tmp_path / "gsm_src.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm_rows))
    prep = {
        "mmlu": {"source": "path", "path": str(FIXTURES / "mmlu.jsonl"), "n_items": 3},
        "gsm": {"source": "path", "path": str(tmp_path / "gsm_src.jsonl"), "n_items": 2},
        "bbh": {"source": "path", "path": str(FIXTURES / "bbh.jsonl"), "n_per_task": 1,
                "tasks": ["navigate", "date_understanding"]},
        "tydiqa": {"source": "path", "path": str(FIXTURES / "tydiqa_goldp.json"), "n_per_language": 1},
        "humaneval": {"source": "path", "path": str(FIXTURES / "humaneval.jsonl")},
    }
    data = {}
    for name, cfg in prep.items():
        data[name] = tmp_path / "data" / f"{name}.jsonl"
        prepare_benchmark(name, cfg, cache_dir, data[name])
    run = {
        "mmlu": {"shots": 2, "batch_size": 2},
        "gsm": {"shots": 1, "max_new_tokens": 4, "batch_size": 2},
        "bbh": {"max_new_tokens": 4, "batch_size": 2},
        "tydiqa": {"max_new_tokens": 4, "max_context_tokens": 16},
        "humaneval": {"n_samples": 2, "k": [1, 2], "max_new_tokens": 4, "timeout_s": 5, "batch_size": 2},
    }
    model, tokenizer = tiny_lm
    results = run_suite(model, tokenizer, run, data, tmp_path / "out")
    expected = {"mmlu": ("acc", 3), "gsm": ("exact_match", 2), "bbh": ("exact_match", 2),
                "tydiqa": ("f1", 2), "humaneval": ("pass@1", 2)}
    for name, (metric, n) in expected.items():
        written = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert written["metric"] == metric and written["n_items"] == n == len(written["samples"]), name
        assert 0.0 <= written["score"] <= 1.0 and written["settings"]["task"] == f"spiel_{name}"
        assert all(s["prompt"] and "extracted" in s for s in written["samples"]), name
        assert written["score"] == pytest.approx(results[name]["score"])
    mmlu = results["mmlu"]
    assert mmlu["score"] == pytest.approx(sum(s["correct"] for s in mmlu["samples"]) / 3)
    assert all(s["prompt"].count("\nAnswer: ") == 2 for s in mmlu["samples"])  # 2 shots
    assert set(results["bbh"]["breakdown"]) == {"navigate", "date_understanding"}
    assert set(results["tydiqa"]["breakdown"]) == {"finnish", "swahili"}
    for s in results["humaneval"]["samples"]:
        assert len(s["output"]) == 2 and s["n"] == 2 and set(s["pass_at"]) == {"1", "2"}
    assert results["humaneval"]["settings"]["generation"]["temperature"] == 0.1


def test_unavailable_tydiqa_cell_is_honest(tmp_path, cache_dir, tiny_lm):
    path = tmp_path / "tydiqa.jsonl"
    prepare_benchmark("tydiqa", {"source": "packaged"}, cache_dir, path)
    model, tokenizer = tiny_lm
    result = run_suite(model, tokenizer, {"tydiqa": {}}, {"tydiqa": path}, tmp_path / "out")["tydiqa"]
    assert result["score"] is None and result["n_items"] == 0 and result["samples"] == []
    assert result["note"] == "no TyDiQA data: set evals.tydiqa.path or use the hub"


def test_missing_manifest_is_a_clear_error(tmp_path, tiny_lm):
    (tmp_path / "gsm.jsonl").write_text("")
    model, tokenizer = tiny_lm
    with pytest.raises(FileNotFoundError, match="gsm: no manifest"):
        run_suite(model, tokenizer, {"gsm": {}}, {"gsm": tmp_path / "gsm.jsonl"}, tmp_path / "out")


def test_batch_size_is_a_number_or_lm_evals_auto():
    """paper.yaml evaluates with batch_size "auto" (lm-eval finds the largest that fits)."""
    from types import SimpleNamespace

    from evals.suite import set_batch_size

    lm = SimpleNamespace(batch_size_per_gpu=1, batch_schedule=1, batch_sizes={0: 64})
    set_batch_size(lm, 8)
    assert lm.batch_size_per_gpu == 8
    set_batch_size(lm, "auto:4")
    assert (lm.batch_size_per_gpu, lm.batch_schedule, lm.batch_sizes) == ("auto", 4.0, {})
    set_batch_size(lm, "auto")
    assert lm.batch_schedule == 1.0
