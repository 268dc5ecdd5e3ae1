"""Read one run's evaluation results, turning every missing or failed piece into a reason."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from analysis.intervals import ItemScores


@dataclass(frozen=True)
class Cell:
    """One table cell: a real measurement, or None with the reason it is empty. `items`: the
    per-item values behind the value (None where the result file has no samples)."""

    value: float | None
    reason: str = ""
    n_items: int | None = None
    items: ItemScores | None = None
    n_tokens: int | None = None  # the tokens a loss scored (held-out loss), where it says


# Benchmarks score a fraction shown in %; the held-out instruction loss (nats/token) and answer
# bits per byte (keys "<bench>_bpb", one per run like a benchmark) are shown as they are, and
# lower is better for both.
PER_ROLE = {"heldout_loss"}  # one per mixture role: index key "heldout_loss:<role>"
BPB_SUFFIX = "_bpb"


def better_direction(score: str) -> str:
    """"lower" or "higher": which way `score` improves (the grid's pick, Figure 4's labels)."""
    return "lower" if is_loss(score) else "higher"


def result_key(role: str, bench: str) -> str:
    """The index.json key of a column: held-out loss is per mixture role, benchmarks and their
    answer likelihoods are not."""
    return f"{bench}:{role}" if bench in PER_ROLE else bench


def is_loss(bench: str) -> bool:
    """A loss-like score (lower is better, not a percentage): held-out loss, bits per byte."""
    return bench in PER_ROLE or bench.endswith(BPB_SUFFIX)


def scale_of(key: str) -> float:
    """Table units per unit of a result file's score: % for accuracies, 1 for losses."""
    return 1.0 if is_loss(key.split(":")[0]) else 100.0


@dataclass(frozen=True)
class ItemReader:
    """Where one benchmark's samples keep the per-item value (evals/<bench>.py `score`)."""

    value: Callable[[dict], float]
    denominator: str | None = None  # ratio score: sum(value) / sum(sample[denominator])
    group: str | None = None        # macro average over sample[group]
    binary: bool = False


def _correct(sample: dict) -> float:
    return float(bool(sample["correct"]))


ITEM_READERS = {
    "mmlu": ItemReader(_correct, binary=True),
    "gsm": ItemReader(_correct, binary=True),
    "bbh": ItemReader(_correct, group="task", binary=True),           # macro over subtasks
    "tydiqa": ItemReader(lambda s: float(s["f1"]), group="lang"),      # macro over languages
    # per problem: the unbiased pass@k of its n completions, for the headline k
    "humaneval": ItemReader(lambda s: float(s["pass_at"][str(s["k"])])),
    "heldout_loss": ItemReader(lambda s: float(s["nll"]), denominator="tokens"),
}
BPB_READER = ItemReader(lambda s: float(s["bits"]), denominator="bytes")


def item_reader(bench: str) -> ItemReader:
    if bench.endswith(BPB_SUFFIX):
        return BPB_READER
    if bench not in ITEM_READERS:
        raise ValueError(f"no per-item reader for benchmark {bench!r} (analysis.results.ITEM_READERS)")
    return ITEM_READERS[bench]


def item_scores(result: dict, key: str, path: Path) -> ItemScores | None:
    """The per-item values of a result file's score (None where it records no samples); they
    must reproduce its score, so that an interval is about the number in the table."""
    samples = result.get("samples")
    if not samples:
        return None
    reader = item_reader(key.split(":")[0])
    try:
        items = ItemScores(
            ids=tuple(str(s.get("id", i)) for i, s in enumerate(samples)),
            values=np.array([reader.value(s) for s in samples], dtype=float),
            denominators=(None if reader.denominator is None else
                          np.array([s[reader.denominator] for s in samples], dtype=float)),
            groups=None if reader.group is None else tuple(str(s[reader.group]) for s in samples),
            binary=reader.binary)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: samples of {key!r} do not hold its per-item values: {e!r}") from e
    if not math.isclose(items.score(), result["score"], rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(f"{path}: the samples of {key!r} give {items.score()!r}, the file's "
                         f"score is {result['score']!r}")
    return items


def read_cell(index_path: Path, key: str) -> Cell:
    """The score under `key` in an evaluation directory's index.json (accuracies in %), with
    its per-item values."""
    if not index_path.exists():
        return Cell(None, "not run")
    index = json.loads(index_path.read_text())
    if index.get("status") != "ok":
        return Cell(None, f"failed: {index.get('error', 'unknown error')}")
    if key not in index["benchmarks"]:
        return Cell(None, "not evaluated")
    path = index_path.parent / index["benchmarks"][key]
    result = json.loads(path.read_text())
    if result.get("score") is None:
        return Cell(None, result.get("note", "no score"))
    return Cell(scale_of(key) * result["score"], n_items=result.get("n_items"),
                items=item_scores(result, key, path), n_tokens=result.get("n_tokens"))
