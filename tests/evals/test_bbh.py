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


# sha256 of each official cot-prompts/<task>.txt as the reference reads it: the lines after the
# two-line canary header, joined, stripped (suzgunmirac/BIG-Bench-Hard at 9ee07bd)
OFFICIAL_PROMPT_SHA256 = {
    "boolean_expressions": "84d89ef2ebf255217e5b4b195bbdb5bc4847efff65ca9674aad0d156b6818318",
    "causal_judgement": "b76a33493a1da78a766626e0921a00a2684116d7f691e462a2e9bd405f44e529",
    "date_understanding": "ec60ecb5998c5e396e71de91b0de56cd088b8a3fd50122c71c4c7798c3f8c09f",
    "disambiguation_qa": "aa108ba978ed948df6e6d18205780b9ccf15fdb50aa545be0e8861ed4f813d26",
    "dyck_languages": "52dec948d978cd0a9eb83b757aaf8cae07717f690c6abd62f390e956a122e6f5",
    "formal_fallacies": "58daee21cb8ac0268dc073e3fb1b3a54ad51cf256ad890c40f4d8c69da433e5e",
    "geometric_shapes": "e219fdcdf28ca3b1eab833ec5aecb97c49e4b89b6c23d1ab7da6e8b2d30b40ba",
    "hyperbaton": "266bfd031bdfa606cbb22d0d73fdffc5c48bbb0a624fe3e8e15813ba4980d30f",
    "logical_deduction_five_objects": "2c8a9581185b0f5b79a21bf91465be425f7c92cb7898897e2295fe218e5cea68",
    "logical_deduction_seven_objects": "2c8a9581185b0f5b79a21bf91465be425f7c92cb7898897e2295fe218e5cea68",
    "logical_deduction_three_objects": "2c8a9581185b0f5b79a21bf91465be425f7c92cb7898897e2295fe218e5cea68",
    "movie_recommendation": "82430ef6ed36e54738442941790b45d7514370d6fd12cc5496b6f01837659597",
    "multistep_arithmetic_two": "83b6388b22747d01a65b22d85b0cdaaa5a666b2a50df1dac2b8f405ff60bdcd5",
    "navigate": "0c04ef97ca6a58e6e5c76eb44779ae0add6c604ac04afd1302f89a835519ad51",
    "object_counting": "a536307309edfb2ca91c9f6144bc83556d2132004f8315305fa7fa4d99c5ae2c",
    "penguins_in_a_table": "8ee12e67dee1069f2f81097f9a42a202c31d6dbe4cab16ad90c44a90a0efa297",
    "reasoning_about_colored_objects": "e4a2503c80dd08f93246693dae22831e54857d3b658721bc6887930e5ee1e890",
    "ruin_names": "3aa1204d5f34cdf1fc32edbf2199293cc294444a9558e152268eadec3dac531e",
    "salient_translation_error_detection": "9c13f5b5cb46b8bf2908162f1f704d5b79d046b47363b94535de5b586e87b3ae",
    "snarks": "41200ac2cece7f4f4d76b9853e3249095734cef00831a93ac513a1a5d8314ade",
    "sports_understanding": "be04f01eee26a3021e0ad69a0f6e1f4667ec694f95f651b5cf853a8b37281418",
    "temporal_sequences": "c597815135af9c04f78cbf1281026a882fdaf3615f61872012b6ba7eb22ebe50",
    "tracking_shuffled_objects_five_objects": "466b860c8cec8d636dd59964aa67ab2c78950163f364e4d510d720a2233b0198",
    "tracking_shuffled_objects_seven_objects": "466b860c8cec8d636dd59964aa67ab2c78950163f364e4d510d720a2233b0198",
    "tracking_shuffled_objects_three_objects": "466b860c8cec8d636dd59964aa67ab2c78950163f364e4d510d720a2233b0198",
    "web_of_lies": "68f58c5e0ea6760a2a31aa3c39cde372378e061d1150fa8ddda06fc5a5aff697",
    "word_sorting": "ba1451cfccb485f1c8f7aa25252f48537d9769f19c762aac3cf08e7b107584be",
}


@pytest.mark.parametrize("task", bbh.TASKS)
def test_prompt_files_are_the_official_cot_prompts(task, cache_dir):
    import hashlib

    text = bbh.prompt_file(task, cache_dir)
    assert hashlib.sha256(text.encode()).hexdigest() == OFFICIAL_PROMPT_SHA256[task]


def test_sports_understanding_keeps_the_reasoning_on_the_answer_line(cache_dir):
    text = bbh.prompt_file("sports_understanding", cache_dir)
    assert ('Finals."\nA: Let\'s think step by step. Bam Adebayo is an American basketball player.'
            in text)


@pytest.mark.parametrize("output, expected", [
    (" Let's think step by step. X is early. So the answer is (B).", "(B)"),
    ("The answer is Yes. Then more.", "Yes"),
    ("so the answer is 12/14/1937.", "12/14/1937"),
    ("the answer is valid", "the answer is valid"),  # no closing period: up to the blank line
    ("  (A)  ", "(A)"),
    # the reference searches the whole (unstopped) output for the first match
    ("X is early. So the answer is (B).\n\nQ: Next?\nA: So the answer is (C).", "(B)"),
    ("I am not sure\n\nQ: Next?\nA: So the answer is (C).", "(C)"),
    ("I am not sure\n\nQ: Next?\nA: no idea", "I am not sure"),
    ("the answer is Yes\nand the answer is No.", "No"),  # a match never spans lines
])
def test_extract_answer(output, expected):
    assert bbh.extract_answer(output) == expected


@pytest.mark.parametrize("prediction, target, expected", [
    ("(A)", "(A)", True), ("A", "(A)", True), ("yes", "Yes", True), ("Valid.", "valid", True),
    ("(B)", "(A)", False), ("not valid", "valid", False), (" yes", "Yes", False),
])
def test_exact_match_ignores_case_and_punctuation(prediction, target, expected):
    assert bbh.exact_match(prediction, target) is expected


def test_score_extracts_then_matches():
    record = bbh.score({"target": "(A)", "task": "navigate"}, ["So the answer is a.\n\nQ: more"])
    assert record["extracted"] == "a" and record["correct"]
    assert not bbh.score({"target": "(A)", "task": "navigate"}, ["So the answer is (B)."])["correct"]


def test_task_yaml_declares_the_same_exact_match_options():
    import yaml

    from evals.lm_eval_files import _TolerantLoader

    cfg = yaml.load((bbh.Path(bbh.__file__).parent / "tasks/spiel_bbh.yaml").read_text(),
                    Loader=_TolerantLoader)
    (metric,) = cfg["metric_list"]
    assert {k: metric[k] for k in bbh.EM_KWARGS} == bbh.EM_KWARGS


def test_generation_runs_on_past_the_blank_line_unless_asked():
    assert bbh.generation({})["until"] == []  # the reference's stop never fired
    assert bbh.generation({"stop_at_blank_line": True})["until"] == ["\n\n"]
    assert bbh.generation({"max_new_tokens": 7})["max_gen_toks"] == 7


def test_macro_average_over_subtasks():
    records = [{"task": "a", "correct": True}, {"task": "a", "correct": True},
               {"task": "a", "correct": True}, {"task": "b", "correct": False}]
    assert bbh.aggregate(records) == pytest.approx(0.5)  # micro would be 0.75


def test_hub_path_per_subtask_configs(monkeypatch, tmp_path, cache_dir):
    import datasets

    rows = [json.loads(line) for line in (FIXTURES / "bbh.jsonl").read_text().splitlines()]
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split, kw.get("revision")))
        return datasets.Dataset.from_list([{"input": r["input"], "target": r["target"]}
                                           for r in rows if r["task"] == name])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = {"source": "hub", "tasks": ["navigate", "date_understanding"], "n_per_task": 1}
    manifest = prepare_benchmark("bbh", cfg, cache_dir, tmp_path / "bbh.jsonl")
    # lm-eval 0.4.13's copy, pinned to a commit (lukaemon/bbh does not load per subtask)
    pin = "b5306be6f827cfafbb545ff5a51f96916029b0fd"
    assert calls == [("SaylorTwift/bbh", "navigate", "test", pin),
                     ("SaylorTwift/bbh", "date_understanding", "test", pin)]
    assert manifest["n_items"] == 2 and set(manifest["fewshot"]["prompts"]) == {"navigate", "date_understanding"}
    again = prepare_benchmark("bbh", cfg, cache_dir, tmp_path / "bbh2.jsonl")
    assert again["indices"] == manifest["indices"]


def test_unknown_subtask_is_named(tmp_path, cache_dir):
    with pytest.raises(ValueError, match="unknown subtasks \\['navigat'\\]"):
        prepare_benchmark("bbh", {"source": "hub", "tasks": ["navigat"]}, cache_dir, tmp_path / "b.jsonl")


def test_offline_rules_rebuild_the_official_exemplars(cache_dir):
    """Golden test: every exemplar whose raw item has the same option set is rebuilt exactly,
    with its answer; BBH edited the options of one date/ruin_names exemplar."""
    from artifacts import bigbench
    from evals.lm_eval_files import fewshot_samples

    for task, rule in bbh.OFFLINE_TASKS.items():
        raw = bigbench.whole_task_examples(rule.source)
        by_input = {rule.prefix + r["input"].strip(): r for r in raw}
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


def test_schema_accepts_the_stop_switch():
    import jsonschema
    import yaml

    root = Path(__file__).parents[2]
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    bench = {"$defs": schema["$defs"], "$ref": "#/$defs/bench"}
    jsonschema.validate({"source": "hub", "stop_at_blank_line": True}, bench)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"source": "hub", "stop_at_blank_line": "yes"}, bench)
