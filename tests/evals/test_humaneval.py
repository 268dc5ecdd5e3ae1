import json
from pathlib import Path

import pytest

from evals import humaneval, prepare_benchmark

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 0.4), (5, 2, 2, 0.7), (5, 0, 1, 0.0), (3, 2, 2, 1.0), (20, 1, 10, 0.5),
    (20, 20, 1, 1.0), (10, 3, 5, 1 - 21 / 252),
])
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert humaneval.pass_at_k(n, c, k) == pytest.approx(expected)


def _doc():
    item = json.loads((FIXTURES / "humaneval.jsonl").read_text().splitlines()[0])
    return {**item, "k": [1, 2], "timeout_s": 3.0, "memory_mb": 512}


def test_score_runs_completions():
    record = humaneval.score(_doc(), ["    return a + b\n", "    return a - b\n", "    return b + a\n"])
    assert (record["n"], record["c"]) == (3, 2)
    assert record["extracted"] == ["passed", "failed", "passed"]
    assert record["pass_at"] == {"1": pytest.approx(2 / 3), "2": pytest.approx(1.0)}
    assert humaneval.aggregate([record, {**record, "pass_at": {"1": 0.0, "2": 0.0}}]) == pytest.approx(1 / 3)


def test_score_counts_an_early_exit_as_failed():
    """The hostile completions are in tests/evals/test_sandbox.py; this one goes through score."""
    record = humaneval.score(_doc(), ["    import os\n    os._exit(0)\n", "    return 0\nimport os\nos._exit(0)\n"])
    assert record["c"] == 0 and record["extracted"] == ["failed", "failed"]


def test_generation_settings():
    doc = _doc()
    assert humaneval.build_docs([doc], None, {})[0]["timeout_s"] == 3.0  # the reference's
    assert humaneval.build_docs([doc], None, {"timeout_s": 7})[0]["timeout_s"] == 7
    gen = humaneval.generation({"temperature": 0.2, "max_new_tokens": 64})
    assert gen["do_sample"] and gen["temperature"] == 0.2 and gen["top_p"] == 0.95
    assert "\ndef" in gen["until"] and gen["max_gen_toks"] == 64
    with pytest.raises(ValueError, match="k=5 exceeds n_samples=2"):
        humaneval.build_docs([doc], None, {"k": [1, 5], "n_samples": 2})


def test_hub_path(monkeypatch, tmp_path, cache_dir):
    import datasets

    rows = [json.loads(line) for line in (FIXTURES / "humaneval.jsonl").read_text().splitlines()]
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    manifest = prepare_benchmark("humaneval", {"source": "hub"}, cache_dir, tmp_path / "h.jsonl")
    assert calls == [("openai/openai_humaneval", None, "test")] and manifest["n_items"] == 2
