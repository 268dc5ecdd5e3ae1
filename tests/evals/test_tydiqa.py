import json
from pathlib import Path

import pytest

from evals import prepare_benchmark, tydiqa

FIXTURES = Path(__file__).parent / "fixtures"


def test_golden_prompt_english_and_swahili():
    shot = {"context": "Paris is in France.", "question": "Where is Paris?", "answers": ["France"]}
    item = {"lang": "english", "context": "Rome is in Italy.", "question": "Where is Rome?"}
    assert tydiqa.render_prompt(item, [shot]) == (
        "Answer the following question based on the information in the given passage.\n\n"
        "Passage: Paris is in France.\nQuestion: Where is Paris?\nAnswer: France\n\n"
        "Passage: Rome is in Italy.\nQuestion: Where is Rome?\nAnswer:")
    sw = {"lang": "swahili", "context": "K", "question": "S?"}
    assert tydiqa.render_prompt(sw, []) == (
        "Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.\n\n"
        "Kifungu: K\nSwali: S?\nJibu:")


@pytest.mark.parametrize("prediction, gold, expected", [
    ("The Eiffel Tower.", "eiffel tower", 1.0),
    ("Москва", "МОСКВА", 1.0),  # Unicode lowercasing
    ("«Москва»", "Москва", 0.0),  # SQuAD strips ASCII punctuation only, as the official script
    ("the city of Helsinki", "Helsinki", 0.5),
    ("ঢাকা শহর", "ঢাকা", 2 / 3),
    ("", "Nairobi", 0.0),
])
def test_squad_f1(prediction, gold, expected):
    assert tydiqa.f1(prediction, gold) == pytest.approx(expected)


def test_score_takes_best_gold_and_strips():
    record = tydiqa.score({"answers": ["Nairobi", "mji mkuu"], "lang": "swahili"}, [" mji mkuu "])
    assert record["f1"] == 1.0 and record["extracted"] == "mji mkuu"


def test_truncate_passage(tiny_lm):
    _, tokenizer = tiny_lm
    context = "Helsinki on Suomen pääkaupunki. " * 20
    cut = tydiqa.truncate(context, tokenizer, 10)
    assert context.startswith(cut) and len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 10
    assert tydiqa.truncate("short", tokenizer, 10) == "short"


def test_truncate_passage_as_the_reference_with_a_llama_tokenizer(sp_lm):
    """open-instruct encodes and decodes at the tokenizer's defaults: the BOS counts against the
    limit and stays in the cut text as "<s>" (Llama-2 at --max_context_length 1024)."""
    _, tokenizer, _ = sp_lm
    context = "Helsinki on Suomen pääkaupunki. " * 20
    ids = tokenizer.encode(context)
    assert ids[0] == tokenizer.bos_token_id
    cut = tydiqa.truncate(context, tokenizer, 10)
    assert cut == tokenizer.decode(ids[:10]) and cut.startswith("<s> Hel")
    fits = "Helsinki"
    n = len(tokenizer.encode(fits))  # BOS included
    assert tydiqa.truncate(fits, tokenizer, n) == fits
    assert tydiqa.truncate(fits, tokenizer, n - 1) == tokenizer.decode(tokenizer.encode(fits)[: n - 1])


def _goldp(rows: list[tuple[str, str]]) -> dict:
    return {"data": [{"title": "t", "paragraphs": [
        {"context": f"passage {qid}", "qas": [{"id": qid, "question": f"q {qid}?",
                                               "answers": [{"text": f"a {qid}", "answer_start": 0}]}]}
        for qid, _ in rows]}]}


def test_subset_and_shots_are_the_references_draw(tmp_path, cache_dir):
    """The reference (sft-llm's eval/tydiqa/run_eval.py): random.seed(42); for each language in
    the template order, random.sample(that language's dev examples, n) when there are more;
    then, same stream, random.sample(that language's train examples, n_shot) per language."""
    import random

    order = ["swahili", "english", "telugu", "arabic", "finnish"]  # file order, not sorted
    dev = [(f"{lang}-{i}-0", lang) for i in range(7) for lang in order]
    train = [(f"{lang}-t{i}-0", lang) for i in range(4) for lang in order]
    (tmp_path / "dev.json").write_text(json.dumps(_goldp(dev)))
    (tmp_path / "train.json").write_text(json.dumps(_goldp(train)))
    reference_order = ["english", "arabic", "bengali", "finnish", "indonesian", "korean",
                       "russian", "swahili", "telugu"]
    random.seed(42)
    expected = []
    for lang in reference_order:
        examples = [qid for qid, l in dev if l == lang]
        expected += random.sample(examples, 3) if len(examples) > 3 else examples
    expected_shots = {lang: random.sample([qid for qid, l in train if l == lang], 1)
                      for lang in reference_order if any(l == lang for _, l in train)}
    cfg = {"source": "path", "path": str(tmp_path / "dev.json"),
           "train_path": str(tmp_path / "train.json"), "n_per_language": 3}
    manifest = prepare_benchmark("tydiqa", cfg, cache_dir, tmp_path / "t.jsonl")
    items = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == expected
    assert {lang: [s["id"] for s in shots] for lang, shots in manifest["fewshot"].items()} == expected_shots


def test_paper_profile_cuts_passages_at_1024_tokens():
    import jsonschema
    import yaml

    root = Path(__file__).parents[2]
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    bench = {"$defs": schema["$defs"], "$ref": "#/$defs/bench"}
    paper = yaml.safe_load((root / "config/paper.yaml").read_text())["evals"]
    assert paper["tydiqa"]["max_context_tokens"] == 1024 == tydiqa.DEFAULTS["max_context_tokens"]
    for name, cfg in paper.items():
        jsonschema.validate(cfg, bench)
    jsonschema.validate({"source": "path", "path": "dev.json", "train_path": "train.json"}, bench)


def test_packaged_source_marks_the_cell_empty(tmp_path, cache_dir):
    manifest = prepare_benchmark("tydiqa", {"source": "packaged"}, cache_dir, tmp_path / "t.jsonl")
    assert manifest["unavailable"] == "no TyDiQA data: set evals.tydiqa.path or use the hub"
    assert (tmp_path / "t.jsonl").read_text() == ""


def test_local_goldp_file_with_shots_held_out(tmp_path, cache_dir):
    cfg = {"source": "path", "path": str(FIXTURES / "tydiqa_goldp.json"), "n_per_language": 5}
    manifest = prepare_benchmark("tydiqa", cfg, cache_dir, tmp_path / "t.jsonl")
    items = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    shot_ids = {s["id"] for shots in manifest["fewshot"].values() for s in shots}
    assert set(manifest["fewshot"]) == {"finnish", "swahili"} and len(shot_ids) == 2
    assert len(items) == 4 and not shot_ids & {i["id"] for i in items}


def test_hub_path_validation_items_train_shots(monkeypatch, tmp_path, cache_dir):
    import datasets

    goldp = json.loads((FIXTURES / "tydiqa_goldp.json").read_text())
    rows = [{"id": qa["id"], "title": a["title"], "context": p["context"], "question": qa["question"],
             "answers": {"text": [x["text"] for x in qa["answers"]],
                         "answer_start": [x["answer_start"] for x in qa["answers"]]}}
            for a in goldp["data"] for p in a["paragraphs"] for qa in p["qas"]]
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    manifest = prepare_benchmark("tydiqa", {"source": "hub", "n_per_language": 2}, cache_dir,
                                 tmp_path / "t.jsonl")
    assert calls == [("google-research-datasets/tydiqa", "secondary_task", "validation"),
                     ("google-research-datasets/tydiqa", "secondary_task", "train")]
    assert manifest["n_items"] == 4


def test_bad_language_prefix_is_named(tmp_path, cache_dir):
    bad = {"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "klingon-1", "question": "q", "answers": [{"text": "a"}]}]}]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bad\.json data\[0\]\.paragraphs\[0\]\.qas\[0\]: id 'klingon-1'"):
        prepare_benchmark("tydiqa", {"source": "path", "path": str(tmp_path / "bad.json")},
                          cache_dir, tmp_path / "t.jsonl")
