"""Golden prompts: each benchmark's prompt for fixture items, built through prepare_benchmark and
build_docs, equals the string the reference evaluation code (open-instruct's eval/ at b750187 as
edited in ducdauge/sft-llm at dbff5b8) builds for the same items, and is what lm-eval sends to the
model. The expected strings are written out from reading that code; the BBH prompt text is BBH's
cot-prompts/sports_understanding.txt (suzgunmirac/BIG-Bench-Hard at 9ee07bd) after its header."""
import json

import pytest

from artifacts.atomic import write_jsonl
from artifacts.jsonl import read_jsonl
from evals import humaneval, prepare_benchmark
from evals.data import benchmark_module


def lm_eval_contexts(name: str, docs: list[dict], cfg: dict, tmp_path) -> list[str]:
    """The context strings lm-eval builds from our task YAML for these docs, in doc order."""
    from lm_eval.tasks import TaskManager

    from evals.suite import TASKS_DIR, _task_config

    module = benchmark_module(name)
    path = tmp_path / f"{name}_docs.jsonl"
    write_jsonl(path, docs)
    overrides = module.task_overrides(cfg) if hasattr(module, "task_overrides") else {}
    task_cfg = _task_config(name, path, module.generation(cfg), overrides)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    task = manager.load([task_cfg])["tasks"][task_cfg["task"]]
    task.build_all_requests(rank=0, world_size=1)
    contexts = {}
    for inst in task.instances:
        contexts.setdefault(inst.doc_id, set()).add(inst.args[0])
    assert all(len(c) == 1 for c in contexts.values())
    return [contexts[i].pop() for i in sorted(contexts)]


def _docs(name: str, cfg: dict, tmp_path, cache_dir, tokenizer=None) -> list[dict]:
    items_path = tmp_path / f"{name}.jsonl"
    manifest = prepare_benchmark(name, cfg, cache_dir, items_path)
    return benchmark_module(name).build_docs(read_jsonl(items_path), manifest["fewshot"], cfg,
                                             tokenizer)


# ---------------------------------------------------------------- MMLU

MMLU_DEV = [
    {"question": "Find the order of the group Z_4.", "subject": "abstract_algebra",
     "choices": ["1", "2", "3", "4"], "answer": 3},
    {"question": "Is every cyclic group abelian?", "subject": "abstract_algebra",
     "choices": ["Yes", "No", "Only if finite", "Only if infinite"], "answer": 0},
    {"question": "Who wrote the Federalist Papers?", "subject": "high_school_us_history",
     "choices": ["Hamilton, Madison and Jay", "Jefferson", "Adams", "Franklin"], "answer": 0},
]
MMLU_ITEMS = [
    {"question": "What is the order of Z_6?", "subject": "abstract_algebra",
     "choices": ["2", "3", "6", "12"], "answer": 2},
    {"question": "In which year did the Civil War end?", "subject": "high_school_us_history",
     "choices": ["1861", "1865", "1870", "1876"], "answer": 1},
]
MMLU_EXPECTED = [
    "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
    "Find the order of the group Z_4.\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D\n\n"
    "Is every cyclic group abelian?\nA. Yes\nB. No\nC. Only if finite\nD. Only if infinite\n"
    "Answer: A\n\n"
    "What is the order of Z_6?\nA. 2\nB. 3\nC. 6\nD. 12\nAnswer:",
    "The following are multiple choice questions (with answers) about  high school us history.\n\n"
    "Who wrote the Federalist Papers?\nA. Hamilton, Madison and Jay\nB. Jefferson\nC. Adams\n"
    "D. Franklin\nAnswer: A\n\n"
    "In which year did the Civil War end?\nA. 1861\nB. 1865\nC. 1870\nD. 1876\nAnswer:",
]


@pytest.mark.parametrize("split", ["test", "validation"])
def test_mmlu(split, monkeypatch, tmp_path, cache_dir, tiny_lm):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append(split)
        return datasets.Dataset.from_list(MMLU_DEV if split == "dev" else MMLU_ITEMS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = {"source": "hub", "shots": 5, "split": split}
    docs = _docs("mmlu", cfg, tmp_path, cache_dir, tiny_lm[1])
    monkeypatch.undo()  # lm-eval loads our docs file with datasets too
    assert calls == [split, "dev"]
    assert [d["prompt"] for d in docs] == MMLU_EXPECTED
    assert lm_eval_contexts("mmlu", docs, cfg, tmp_path) == MMLU_EXPECTED


# ---------------------------------------------------------------- GSM

GSM_EXPECTED = (
    "Answer the following questions.\n\n"
    "Question: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?\n"
    "Answer: There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. So the answer is 6.\n\n"
    "Question: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\n"
    "Answer: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5.\n\n"
    "Question: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?\n"
    "Answer: Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. So the answer is 39.\n\n"
    "Question: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?\n"
    "Answer: Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. So the answer is 8.\n\n"
    "Question: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?\n"
    "Answer: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. So the answer is 9.\n\n"
    "Question: There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?\n"
    "Answer: There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. So the answer is 29.\n\n"
    "Question: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?\n"
    "Answer: Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. So the answer is 33.\n\n"
    "Question: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\n"
    "Answer: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. So the answer is 8.\n\n"
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:"
)


def test_gsm(tmp_path, cache_dir):
    src = tmp_path / "gsm_src.jsonl"
    src.write_text(json.dumps({"question": " Tom has 3 apples and buys 4 more. How many apples "
                                           "does he have?\n", "answer": "3 + 4 = 7\n#### 7"}) + "\n")
    cfg = {"source": "path", "path": str(src)}
    docs = _docs("gsm", cfg, tmp_path, cache_dir)
    assert docs[0]["prompt"] == GSM_EXPECTED
    assert lm_eval_contexts("gsm", docs, cfg, tmp_path) == [GSM_EXPECTED]


def test_gsm_zero_shot_wording():
    from evals import gsm

    assert gsm.render_prompt("What is 1 + 1?", []) == (
        "Answer the following question.\n\nQuestion: What is 1 + 1?\nAnswer:")


# ---------------------------------------------------------------- BBH

BBH_INPUT = 'Is the following sentence plausible? "Elias Lindholm beat the buzzer."'
BBH_EXPECTED = (
    "Determine whether an artificially constructed sentence relating to sports is plausible or not.\n\n"
    'Q: Is the following sentence plausible? "Bam Adebayo scored a reverse layup in the Western Conference Finals."\n'
    "A: Let's think step by step. Bam Adebayo is an American basketball player. Scoring a reverse layup in the Western Conference Finals is part of the NBA Finals. So the answer is yes.\n\n"
    'Q: Is the following sentence plausible? "Santi Cazorla scored a touchdown."\n'
    "A: Let's think step by step. Santi Cazorla is a soccer player. Touchdown is part of American football and rugby. So the answer is no.\n\n"
    'Q: Is the following sentence plausible? "DeMar DeRozan was called for the goal tend."\n'
    "A: Let's think step by step. DeMar DeRozan is an American basketball player. Goal tending is part of basketball. So the answer is yes.\n\n"
    f"Q: {BBH_INPUT}\nA:"
)


def test_bbh(tmp_path, cache_dir):
    src = tmp_path / "bbh_src.jsonl"
    src.write_text(json.dumps({"task": "sports_understanding", "input": BBH_INPUT,
                               "target": "no"}) + "\n")
    cfg = {"source": "path", "path": str(src), "tasks": ["sports_understanding"]}
    docs = _docs("bbh", cfg, tmp_path, cache_dir)
    assert docs[0]["prompt"] == BBH_EXPECTED
    assert lm_eval_contexts("bbh", docs, cfg, tmp_path) == [BBH_EXPECTED]


# ---------------------------------------------------------------- TyDiQA

def _goldp(qas: list[tuple[str, str, str, str]]) -> dict:
    return {"data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": question,
                                      "answers": [{"text": answer, "answer_start": 0}]}]}
        for qid, context, question, answer in qas]}]}


TYDIQA_EXPECTED = [
    "Answer the following question based on the information in the given passage.\n\n"
    "Passage: Paris is the capital of France.\nQuestion: What is the capital of France?\n"
    "Answer: Paris\n\n"
    "Passage: Rome is the capital of Italy.\nQuestion: What is the capital of Italy?\nAnswer:",
    "Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.\n\n"
    "Kifungu: Nairobi ni mji mkuu wa Kenya.\nSwali: Mji mkuu wa Kenya ni upi?\nJibu: Nairobi\n\n"
    "Kifungu: Dodoma ni mji mkuu wa Tanzania.\nSwali: Mji mkuu wa Tanzania ni upi?\nJibu:",
]


def test_tydiqa(tmp_path, cache_dir, tiny_lm):
    dev = _goldp([("swahili-d-0", "Dodoma ni mji mkuu wa Tanzania.",
                   "Mji mkuu wa Tanzania ni upi?", "Dodoma"),
                  ("english-d-0", "Rome is the capital of Italy.",
                   "What is the capital of Italy?", "Rome")])
    train = _goldp([("english-t-0", "Paris is the capital of France.",
                     "What is the capital of France?", "Paris"),
                    ("swahili-t-0", "Nairobi ni mji mkuu wa Kenya.",
                     "Mji mkuu wa Kenya ni upi?", "Nairobi")])
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    (tmp_path / "train.json").write_text(json.dumps(train))
    cfg = {"source": "path", "path": str(tmp_path / "dev.json"),
           "train_path": str(tmp_path / "train.json")}
    docs = _docs("tydiqa", cfg, tmp_path, cache_dir, tiny_lm[1])
    assert [d["prompt"] for d in docs] == TYDIQA_EXPECTED  # english first: the reference's order
    assert lm_eval_contexts("tydiqa", docs, cfg, tmp_path) == TYDIQA_EXPECTED


# ---------------------------------------------------------------- HumanEval

HE_PROMPT = 'def add(a, b):\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    """\n'
HE_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n"


def test_humaneval(tmp_path, cache_dir):
    src = tmp_path / "he_src.jsonl"
    src.write_text(json.dumps({"task_id": "X/0", "prompt": HE_PROMPT, "test": HE_TEST,
                               "entry_point": "add"}) + "\n")
    cfg = {"source": "path", "path": str(src)}
    docs = _docs("humaneval", cfg, tmp_path, cache_dir)
    assert docs[0]["prompt"] == HE_PROMPT  # 0-shot, no template: the problem's prompt verbatim
    assert lm_eval_contexts("humaneval", docs, cfg, tmp_path) == [HE_PROMPT]
    # The reference runs prompt + completion + "\n" + test + "\n" + "check(entry)" in one
    # process; evals.sandbox runs the same solution and the same check in two (solver, judge).
    record = humaneval.score(docs[0], ["    return a + b\n", "    return a - b\n"])
    assert (record["c"], record["extracted"]) == (1, ["passed", "failed"])
    assert docs[0]["timeout_s"] == 3.0
