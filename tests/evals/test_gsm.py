import json

import pytest

from evals import gsm, prepare_benchmark, run_suite
from evals.data import manifest_path

RAW = [{"question": f"Tom has {i} apples and buys 1,000 more. How many now?",
        "answer": f"{i} + 1000 = {i + 1000}.\n#### {i + 1000:,}"} for i in range(10)]


def test_golden_prompt():
    shots = [{"question": "1+1?", "answer": "1+1=2. The answer is 2."},
             {"question": "2+3?", "answer": "2+3=5. The answer is 5."}]
    assert gsm.render_prompt(" What is 4+4? \n", shots) == (
        "Answer the following questions.\n\n"
        "Question: 1+1?\nAnswer: 1+1=2. The answer is 2.\n\n"
        "Question: 2+3?\nAnswer: 2+3=5. The answer is 5.\n\n"
        "Question: What is 4+4?\nAnswer:")


@pytest.mark.parametrize("output, expected", [
    ("So 5 * 4 = 20. The answer is 1,234.", "1234"),
    ("It costs $1,000,000 in total. The answer is $1,000,000.", "1000000"),
    ("The answer is 5.5.", "5.5"),
    ("She lost 3. The answer is -3", "-3"),
    ("3 apples and 4 pears, 7 fruits.", "7"),
    ("No idea.", None),
    ("", None),
])
def test_extract_answer(output, expected):
    assert gsm.extract_answer(output) == expected


def test_score_is_numeric_equality():
    doc = {"target": "18"}
    assert gsm.score(doc, ["The answer is 18.0."])["correct"]
    assert gsm.score(doc, ["The answer is 18."])["correct"]
    assert not gsm.score(doc, ["The answer is -18."])["correct"]
    assert not gsm.score(doc, ["The answer is 181."])["correct"]
    assert not gsm.score(doc, ["no number here"])["correct"]


def test_prepare_from_path_is_seeded_and_written(tmp_path, cache_dir):
    src = tmp_path / "gsm.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RAW))
    cfg = {"source": "path", "path": str(src), "n_items": 4, "seed": 42}
    manifest = prepare_benchmark("gsm", cfg, cache_dir, tmp_path / "a.jsonl")
    again = prepare_benchmark("gsm", cfg, cache_dir, tmp_path / "b.jsonl")
    assert manifest["indices"] == again["indices"] and len(manifest["indices"]) == 4
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["source_index"] for r in rows] == manifest["indices"]
    assert rows[0]["target"] == str(manifest["indices"][0] + 1000)  # thousands comma dropped
    assert len(manifest["fewshot"]) == 8
    assert manifest["fewshot"][0]["question"].startswith("There are 15 trees in the grove.")
    assert json.loads(manifest_path(tmp_path / "a.jsonl").read_text()) == manifest


def test_hub_path_uses_load_dataset(monkeypatch, tmp_path, cache_dir):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(RAW)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    manifest = prepare_benchmark("gsm", {"source": "hub", "n_items": 3}, cache_dir,
                                 tmp_path / "gsm.jsonl")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert manifest["n_total"] == 10 and manifest["n_items"] == 3


def test_bad_rows_name_the_source(tmp_path, cache_dir):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl row 0: answer has no '####"):
        prepare_benchmark("gsm", {"source": "path", "path": str(src)}, cache_dir, tmp_path / "o.jsonl")
    src.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid JSON"):
        prepare_benchmark("gsm", {"source": "path", "path": str(src)}, cache_dir, tmp_path / "o.jsonl")


def test_tiny_model_end_to_end(tmp_path, cache_dir, tiny_lm):
    src = tmp_path / "gsm.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RAW))
    prepare_benchmark("gsm", {"source": "path", "path": str(src), "n_items": 3}, cache_dir,
                      tmp_path / "gsm_items.jsonl")
    model, tokenizer = tiny_lm
    cfg = {"n_items": 3, "shots": 2, "max_new_tokens": 6, "batch_size": 2}
    results = run_suite(model, tokenizer, {"gsm": cfg}, {"gsm": tmp_path / "gsm_items.jsonl"},
                        tmp_path / "out")
    written = json.loads((tmp_path / "out" / "gsm.json").read_text())
    assert written == json.loads(json.dumps(results["gsm"]))
    assert written["metric"] == "exact_match" and written["n_items"] == 3
    samples = written["samples"]
    assert written["score"] == pytest.approx(sum(s["correct"] for s in samples) / 3)
    for s in samples:
        assert s["prompt"].startswith("Answer the following questions.\n\nQuestion: There are 15")
        assert s["prompt"].count("Question: ") == 3 and s["prompt"].endswith("\nAnswer:")
        assert "\n" not in s["output"]  # stopped at the newline
        assert s["extracted"] == gsm.extract_answer(s["output"])


def test_written_files_are_complete_and_readable(tmp_path):
    from artifacts.atomic import write_jsonl
    from artifacts.jsonl import read_jsonl

    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": 1}, {"b": "é"}])
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}]
    assert path.stat().st_mode & 0o044  # group/other can read, unlike mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]  # no temp file left behind


def test_fewer_shots_are_drawn_from_the_subset_stream(tmp_path, cache_dir):
    """The reference: random.seed(42); test = random.sample(test, n); then, with n_shot < 8,
    exemplars = random.sample(EXAMPLARS, n_shot) from the same stream."""
    import random

    src = tmp_path / "gsm.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in RAW))
    full = prepare_benchmark("gsm", {"source": "path", "path": str(src)}, cache_dir,
                             tmp_path / "all.jsonl")["fewshot"]
    assert all(s["answer"].endswith(f"So the answer is {s['answer'].split()[-1]}") for s in full)
    random.seed(42)
    expected_items = random.sample(range(10), 4)
    expected_shots = random.sample(full, 3)
    cfg = {"source": "path", "path": str(src), "n_items": 4, "shots": 3}
    manifest = prepare_benchmark("gsm", cfg, cache_dir, tmp_path / "few.jsonl")
    assert manifest["indices"] == expected_items and manifest["fewshot"] == expected_shots
