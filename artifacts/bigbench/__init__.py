"""BIG-bench's JSON tasks as the harness ships them: a subset of the `bigbench==1.0.0` sdist.

Two offline readers need BIG-bench: BBH's packaged items (`evals.bbh` rebuilds seven subtasks
from their raw task.json) and the single-source instruction mixture
(`finetune.mixtures.bigbench`). Both read the 358 MB sdist from PyPI until PyPI stopped serving
bigbench 1.0.0 (December 2026: its index lists 0.0.1 only), so the harness carries what they
read in `tasks.json.gz` (1.1 MB): every example of the `whole` tasks (the BBH sources that
`evals.bbh.OFFLINE_TASKS` rebuilds), and of every other JSON task no larger than
`max_task_bytes`, a seeded sample of `per_task` examples in their original order; each task's
other keys (`task_prefix`, `append_choices_to_input`, ...) are kept unchanged. The file records
the sdist's sha256 and the command that made it (`python -m artifacts.bigbench.make_subset`).
BIG-bench is Apache-2.0, as is this harness.
"""
from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

SUBSET = Path(__file__).with_name("tasks.json.gz")


@functools.cache
def _subset() -> dict:
    with gzip.open(SUBSET, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def provenance() -> dict:
    """Where the subset came from: the sdist, its sha256, the sampling settings."""
    return _subset()["provenance"]


def tasks() -> dict[str, dict]:
    """Task path (e.g. 'logical_deduction/five_objects') -> its task.json (shared: do not edit)."""
    return _subset()["tasks"]


def whole_task_examples(path: str) -> list[dict]:
    """Every raw example of a task kept whole; a sampled task is refused, not silently short."""
    if path not in provenance()["whole"]:
        raise KeyError(f"{SUBSET}: BIG-bench task {path!r} is not kept whole "
                       f"(whole: {provenance()['whole']})")
    return tasks()[path]["examples"]
