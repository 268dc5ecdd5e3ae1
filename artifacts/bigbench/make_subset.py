"""Rebuild `tasks.json.gz` from a copy of the bigbench 1.0.0 sdist (see the package docstring).

    python -m artifacts.bigbench.make_subset bigbench-1.0.0.tar.gz \
        --whole causal_judgment date_understanding disambiguation_qa navigate \
                reasoning_about_colored_objects ruin_names salient_translation_error_detection

Reads every `bigbench/benchmark_tasks/<task>/task.json` in one streaming pass; a task file that
is not JSON is an error naming it. The sample of a task is `random.Random(task path)`, so it does
not depend on which other tasks exist or the order the tarball lists them.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import tarfile
from pathlib import Path

from artifacts.atomic import atomic_path
from artifacts.bigbench import SUBSET
from artifacts.packaged import sha256_of


def read_sdist(sdist: Path, max_task_bytes: int):
    """(task path, task.json) of every JSON task with examples, no larger than max_task_bytes."""
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            if "/benchmark_tasks/" not in member.name or not member.name.endswith("/task.json"):
                continue
            if member.size > max_task_bytes:
                continue
            task = member.name.split("/benchmark_tasks/", 1)[1].rsplit("/task.json", 1)[0]
            try:
                data = json.load(tar.extractfile(member))
            except json.JSONDecodeError as err:
                raise ValueError(f"{sdist}:{member.name}:{err.lineno}: not valid JSON ({err.msg})") from None
            if isinstance(data, dict) and data.get("examples"):
                yield task, data


def make_subset(sdist: Path, whole: list[str], per_task: int, max_task_bytes: int) -> dict:
    kept = {}
    for task, data in read_sdist(sdist, max_task_bytes):
        examples = data["examples"]
        if task not in whole:
            picked = sorted(random.Random(task).sample(range(len(examples)), min(per_task, len(examples))))
            examples = [examples[i] for i in picked]
        kept[task] = {**data, "examples": examples}
    missing = sorted(set(whole) - set(kept))
    if missing:
        raise ValueError(f"{sdist}: no task.json for whole task(s) {missing}")
    digest = sha256_of(sdist)  # streamed: the sdist is 358 MB
    return {"provenance": {"sdist": "bigbench==1.0.0", "sdist_sha256": digest, "whole": sorted(whole),
                           "per_task": per_task, "max_task_bytes": max_task_bytes},
            "tasks": dict(sorted(kept.items()))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sdist", type=Path)
    parser.add_argument("--whole", nargs="+", required=True, help="task paths kept with every example")
    parser.add_argument("--per-task", type=int, default=12)
    parser.add_argument("--max-task-bytes", type=int, default=8_000_000,
                        help="skip larger task files (cifar/mnist pixels, synthetic geometry)")
    parser.add_argument("--out", type=Path, default=SUBSET)
    args = parser.parse_args(argv)
    subset = make_subset(args.sdist, args.whole, args.per_task, args.max_task_bytes)
    with atomic_path(args.out) as tmp:
        # mtime 0: the same sdist and settings give the same bytes
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(json.dumps(subset, ensure_ascii=False, separators=(",", ":")).encode())
    print(f"{args.out}: {len(subset['tasks'])} tasks, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
