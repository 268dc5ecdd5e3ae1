"""Never train on what we evaluate on: exclusion by task name, then by item overlap.

By name: BBH's BIG-bench source tasks (all 23 BBH tasks, also those we cannot rebuild offline),
and any source whose name mentions an evaluation set (GSM8K, MMLU, HumanEval, TyDiQA, BBH).
By item: a training row is dropped when it shares a run of `NGRAM` words with an evaluation
item (the GPT-3 / open-instruct style 13-gram check), or contains a short item whole. The items
are the packaged copies the evaluation suite scores (evals.gsm/mmlu/humaneval `PACKAGED`).
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from artifacts.packaged import fetch
from finetune.mixtures.io import row_text

NGRAM = 13
MIN_SHORT_ITEM_WORDS = 6  # items shorter than NGRAM words are matched whole from this length

# BBH subtask -> its BIG-bench source folder (Suzgun et al. 2022, Table 7).
BBH_SOURCES = {
    "boolean_expressions": "boolean_expressions", "causal_judgement": "causal_judgment",
    "date_understanding": "date_understanding", "disambiguation_qa": "disambiguation_qa",
    "dyck_languages": "dyck_languages", "formal_fallacies": "formal_fallacies_syllogisms_negation",
    "geometric_shapes": "geometric_shapes", "hyperbaton": "hyperbaton",
    "logical_deduction": "logical_deduction", "movie_recommendation": "movie_recommendation",
    "multistep_arithmetic_two": "multistep_arithmetic", "navigate": "navigate",
    "object_counting": "object_counting", "penguins_in_a_table": "penguins_in_a_table",
    "reasoning_about_colored_objects": "reasoning_about_colored_objects",
    "ruin_names": "ruin_names",
    "salient_translation_error_detection": "salient_translation_error_detection",
    "snarks": "snarks", "sports_understanding": "sports_understanding",
    "temporal_sequences": "temporal_sequences",
    "tracking_shuffled_objects": "tracking_shuffled_objects", "web_of_lies": "web_of_lies",
    "word_sorting": "word_sorting",
}
EXCLUDED_TASKS = frozenset(BBH_SOURCES.values())
_EVAL_NAME = re.compile(r"gsm8k|gsm|mmlu|hendrycks|humaneval|human_eval|tydi|bbh|big_bench_hard",
                        re.IGNORECASE)
_WORD = re.compile(r"\w+")


def excluded_name(task: str) -> bool:
    """True for a task we evaluate on (or a BBH source), by its name."""
    return any(part in EXCLUDED_TASKS for part in task.split("/")) or bool(_EVAL_NAME.search(task))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def eval_items(cache_dir: Path) -> dict[str, list[str]]:
    """The texts the evaluation suite scores, read from the same packaged files."""
    from evals import gsm, humaneval, mmlu

    def jsonl(path):
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    return {
        "gsm8k": [r["question"] for r in jsonl(fetch(gsm.PACKAGED, cache_dir))],
        "mmlu": [r["question"] for r in jsonl(fetch(mmlu.PACKAGED, cache_dir))],
        "humaneval": [r["prompt"] for r in jsonl(fetch(humaneval.PACKAGED, cache_dir))],
    }


class OverlapIndex:
    """Word n-grams of evaluation items; `match(text)` names the benchmark a text overlaps."""

    def __init__(self, items: dict[str, list[str]]):
        self.grams: dict[tuple[str, ...], str] = {}
        self.lengths: set[int] = set()
        for bench, texts in items.items():
            for text in texts:
                w = words(text)
                if len(w) >= NGRAM:
                    self.lengths.add(NGRAM)
                    for i in range(len(w) - NGRAM + 1):
                        self.grams.setdefault(tuple(w[i:i + NGRAM]), bench)
                elif len(w) >= MIN_SHORT_ITEM_WORDS:
                    self.lengths.add(len(w))
                    self.grams.setdefault(tuple(w), bench)

    def match(self, text: str) -> str | None:
        w = words(text)
        for n in self.lengths:
            for i in range(len(w) - n + 1):
                bench = self.grams.get(tuple(w[i:i + n]))
                if bench:
                    return bench
        return None


def decontaminate(rows: list[dict], index: OverlapIndex) -> tuple[list[dict], dict[str, int]]:
    """(kept rows, {benchmark: rows dropped}) by name first, then by item overlap."""
    kept, dropped = [], {}
    for row in rows:
        hit = "by-name" if excluded_name(row["source"]) else index.match(row_text(row))
        if hit:
            dropped[hit] = dropped.get(hit, 0) + 1
        else:
            kept.append(row)
    return kept, dropped
