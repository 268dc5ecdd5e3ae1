"""Where benchmark rows come from: the hub (`datasets.load_dataset`), a local file, or a package.

Every benchmark normalises the rows of all three sources to one schema, so the hub and local-path
code paths are the same code after loading. Also the deterministic subset rule shared by all.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable

from artifacts.jsonl import read_jsonl

SOURCES = ("packaged", "hub", "path")


def require(row: dict, keys: Iterable[str], where: str) -> None:
    """Raise a clear error when a normalised/raw row lacks a field."""
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; has {sorted(row)}")


def source_of(name: str, cfg: dict) -> str:
    """Validate `cfg["source"]` (default "packaged") and that a "path" source names its file."""
    source = cfg.get("source", "packaged")
    if source not in SOURCES:
        raise ValueError(f"evals.{name}.source: {source!r} is not one of {SOURCES}")
    if source == "path":
        if not cfg.get("path"):
            raise ValueError(f"evals.{name}.source is 'path' but evals.{name}.path is not set")
        if not Path(cfg["path"]).exists():
            raise FileNotFoundError(f"evals.{name}.path: {cfg['path']} does not exist")
    return source


def hub_rows(hub_id: str, config_name: str | None, split: str, revision: str | None = None) -> list[dict]:
    """Rows of a hub dataset split, as plain dicts (the real path for users with the hub). A
    `revision` applies to the hub only: a local folder laid out like the repository (a mirror)
    holds one revision."""
    import datasets

    local = Path(hub_id).is_dir()
    ds = datasets.load_dataset(hub_id, config_name, split=split, revision=None if local else revision)
    return [dict(row) for row in ds]


def local_rows(path: Path) -> list[dict]:
    """Rows of a local `.jsonl` (one object a line) or `.json` (a list, or {"data": [...]})."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    with open(path, encoding="utf-8") as fh:
        try:
            obj = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if isinstance(obj, dict) and "data" in obj:
        obj = obj["data"]
    if not isinstance(obj, list):
        raise ValueError(f"{path}: expected a JSON list of rows or an object with 'data'")
    return obj


def seeded_subset(n_total: int, n: int | None, seed: int) -> list[int]:
    """Indices of a seeded sample of `n` rows (all rows, in order, when `n` is None or too big).

    `random.Random(seed).sample(range(N), n)` picks the same positions as open-instruct's
    `random.seed(seed); random.sample(rows, n)`, so the GSM subset matches theirs.
    """
    if n is None or n >= n_total:
        return list(range(n_total))
    if n < 0:
        raise ValueError(f"n_items must be >= 0, got {n}")
    return random.Random(seed).sample(range(n_total), n)
