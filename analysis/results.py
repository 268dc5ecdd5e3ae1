"""Read one run's evaluation results, turning every missing or failed piece into a reason."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cell:
    """One table cell: a real measurement, or None with the reason it is empty."""

    value: float | None
    reason: str = ""
    n_items: int | None = None


# Benchmarks score a fraction shown in %; the held-out instruction loss is a loss in nats/token
# (per mixture role); an answer likelihood "<bench>_bpb" is in bits per byte (like a benchmark,
# one per run).
PER_ROLE = {"heldout_loss"}
UNSCALED_SUFFIX = "_bpb"


def is_unscaled(key: str) -> bool:
    """Whether an index.json key's score is shown as it is (a loss), not as a percentage."""
    name = key.split(":")[0]
    return name in PER_ROLE or name.endswith(UNSCALED_SUFFIX)


def result_key(role: str, bench: str) -> str:
    """The index.json key of a column: held-out loss is per mixture role, benchmarks and their
    answer likelihoods are not."""
    return f"{bench}:{role}" if bench in PER_ROLE else bench


def read_cell(index_path: Path, key: str) -> Cell:
    """The score under `key` in an evaluation directory's index.json (accuracies in %)."""
    if not index_path.exists():
        return Cell(None, "not run")
    index = json.loads(index_path.read_text())
    if index.get("status") != "ok":
        return Cell(None, f"failed: {index.get('error', 'unknown error')}")
    if key not in index["benchmarks"]:
        return Cell(None, "not evaluated")
    result = json.loads((index_path.parent / index["benchmarks"][key]).read_text())
    if result.get("score") is None:
        return Cell(None, result.get("note", "no score"))
    scale = 1.0 if is_unscaled(key) else 100.0
    return Cell(scale * result["score"], n_items=result.get("n_items"))
