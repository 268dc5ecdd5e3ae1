"""Few-shot exemplars that lm-eval ships (GSM8K CoT, BBH CoT, MMLU dev), read from the pinned wheel.

We read the YAML files out of the pinned `lm-eval` wheel with `artifacts.packaged.fetch` rather than
from the installed package, so the prompts stay fixed even if the venv's lm-eval is upgraded.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from artifacts.packaged import PackagedFile, fetch

LM_EVAL_REQUIREMENT = "lm-eval==0.4.13"


class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that keeps unknown tags (lm-eval's `!function`) as plain strings."""


_TolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))


def read_task_yaml(member: str, cache_dir: Path) -> dict:
    """Parse `lm_eval/tasks/<member>` from the pinned wheel (no `include:` resolution)."""
    path = fetch(PackagedFile(LM_EVAL_REQUIREMENT, f"lm_eval/tasks/{member}"), cache_dir)
    with open(path, encoding="utf-8") as fh:
        cfg = yaml.load(fh, Loader=_TolerantLoader)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a YAML mapping")
    return cfg


def fewshot_samples(member: str, cache_dir: Path) -> list[dict]:
    """The inline `fewshot_config.samples` of an lm-eval task YAML."""
    cfg = read_task_yaml(member, cache_dir)
    try:
        samples = cfg["fewshot_config"]["samples"]
    except (KeyError, TypeError):
        raise ValueError(f"lm_eval/tasks/{member}: no fewshot_config.samples") from None
    return list(samples)
