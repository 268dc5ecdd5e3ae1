import json
from pathlib import Path

import pytest

from evals import bbh, prepare_benchmark

FIXTURES = Path(__file__).parent / "fixtures"


def test_golden_prompt_file_and_query(cache_dir):
    text = bbh.prompt_file("date_understanding", cache_dir)
    assert text.startswith("Infer the date from context.\n\nQ: Today is Christmas Eve of 1937. "
                           "What is the date 10 days ago in MM/DD/YYYY?\nOptions:\n(A) 12/14/2026\n")
    assert "(F) 12/14/1988\nA: Let's think step by step.\nIf today is Christmas Eve of 1937" in text
    assert text.count("\n\nQ: ") == 3 and text.endswith("So the answer is (B).")
    assert bbh.render_prompt("P", "Is it?\nOptions:\n- Yes\n- No") == "P\n\nQ: Is it?\nOptions:\n- Yes\n- No\nA:"


def test_rebuild_letters_and_yes_no():
    text, target = bbh.rebuild(bbh.OFFLINE_TASKS["ruin_names"], " Which edit of 'abba'? ",
                               ["abbe", "abba x", "bbaa"], "bbaa")
    assert text == "Which edit of 'abba'?\nOptions:\n(A) abbe\n(B) abba x\n(C) bbaa" and target == "(C)"
    text, target = bbh.rebuild(bbh.OFFLINE_TASKS["navigate"], "Take 1 step.", ["True", "False"], "False")
    assert text == ("If you follow these instructions, do you return to the starting point? "
                    "Take 1 step.\nOptions:\n- Yes\n- No") and target == "No"


@pytest.mark.parametrize("output, expected", [
    (" Let's think step by step. X is early. So the answer is (B).", "(B)"),
    ("The answer is Yes. Then more.", "Yes"),
    ("so the answer is 12/14/1937.", "12/14/1937"),
    ("the answer is valid", "the answer is valid"),  # no closing period: whole output
    ("  (A)  ", "(A)"),
])
def test_extract_answer(output, expected):
    assert bbh.extract_answer(output) == expected


def test_macro_average_over_subtasks():
    records = [{"task": "a", "correct": True}, {"task": "a", "correct": True},
               {"task": "a", "correct": True}, {"task": "b", "correct": False}]
    assert bbh.aggregate(records) == pytest.approx(0.5)  # micro would be 0.75


def test_hub_path_per_subtask_configs(monkeypatch, tmp_path, cache_dir):
    import datasets

    rows = [json.loads(line) for line in (FIXTURES / "bbh.jsonl").read_text().splitlines()]
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"input": r["input"], "target": r["target"]}
                                           for r in rows if r["task"] == name])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = {"source": "hub", "tasks": ["navigate", "date_understanding"], "n_per_task": 1}
    manifest = prepare_benchmark("bbh", cfg, cache_dir, tmp_path / "bbh.jsonl")
    assert calls == [("lukaemon/bbh", "navigate", "test"), ("lukaemon/bbh", "date_understanding", "test")]
    assert manifest["n_items"] == 2 and set(manifest["fewshot"]["prompts"]) == {"navigate", "date_understanding"}
    again = prepare_benchmark("bbh", cfg, cache_dir, tmp_path / "bbh2.jsonl")
    assert again["indices"] == manifest["indices"]


def test_unknown_subtask_is_named(tmp_path, cache_dir):
    with pytest.raises(ValueError, match="unknown subtasks \\['navigat'\\]"):
        prepare_benchmark("bbh", {"source": "hub", "tasks": ["navigat"]}, cache_dir, tmp_path / "b.jsonl")


@pytest.mark.slow
def test_offline_rules_rebuild_the_official_exemplars(cache_dir):
    """Golden test (358 MB sdist): every exemplar whose raw item has the same option set is
    rebuilt exactly, with its answer; BBH edited the options of one date/ruin_names exemplar."""
    from evals.lm_eval_files import fewshot_samples
    from artifacts.packaged import fetch_archive

    archive = fetch_archive(bbh.BIGBENCH, cache_dir, sdist=True)
    raw = bbh.read_bigbench_tasks(archive, {r.source for r in bbh.OFFLINE_TASKS.values()})
    for task, rule in bbh.OFFLINE_TASKS.items():
        by_input = {rule.prefix + r["input"].strip(): r for r in raw[rule.source]}
        rebuilt = 0
        for ex in fewshot_samples(f"bbh/cot_fewshot/{task}.yaml", cache_dir):
            stem, options = ex["input"].split("\nOptions:\n")
            item = by_input[stem]
            order = list(item["target_scores"]) if rule.yes_no else [o[4:] for o in options.split("\n")]
            if set(order) != set(item["target_scores"]):
                continue
            correct = next(o for o, s in item["target_scores"].items() if s == 1)
            assert bbh.rebuild(rule, item["input"], order, correct) == (
                ex["input"], bbh.extract_answer(ex["target"])), task
            rebuilt += 1
        assert rebuilt >= 2, task
    items, fewshot, _ = bbh.load({"tasks": ["navigate", "date_understanding", "web_of_lies"]}, cache_dir)
    assert {i["task"] for i in items} == {"navigate", "date_understanding"}
    assert set(fewshot["unavailable"]) == {"web_of_lies"}
    exemplar_inputs = {e["input"] for e in fewshot_samples("bbh/cot_fewshot/navigate.yaml", cache_dir)}
    assert not exemplar_inputs & {i["input"] for i in items}
