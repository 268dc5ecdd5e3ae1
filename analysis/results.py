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


# Benchmarks score a fraction shown in %; the held-out instruction loss is a loss in nats/token.
UNSCALED = {"heldout_loss"}
# Scores where lower is better (a loss); every benchmark score is an accuracy (higher is better).
LOWER_IS_BETTER = {"heldout_loss"}


def better_direction(score: str) -> str:
    """"lower" or "higher": which way `score` improves (the grid's pick, Figure 4's labels)."""
    return "lower" if score in LOWER_IS_BETTER else "higher"


def result_key(role: str, bench: str) -> str:
    """The index.json key of a column: held-out loss is per mixture role, benchmarks are not."""
    return f"{bench}:{role}" if bench in UNSCALED else bench


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
    scale = 1.0 if key.split(":")[0] in UNSCALED else 100.0
    return Cell(scale * result["score"], n_items=result.get("n_items"))
