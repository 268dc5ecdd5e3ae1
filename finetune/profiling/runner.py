"""Runs measurements one at a time, each in a fresh ``python -m finetune.profiling.measure``.

A fresh process per measurement (and per CUDA cap probe) keeps peak RSS and the CUDA caching
allocator from carrying one run's allocations into the next. Nothing here runs two at once;
the Snakemake rules add ``heavy=1`` so the DAG does not either.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from artifacts.atomic import write_json
from finetune.profiling.measure import spec_to_argv
from finetune.profiling.spec import MeasureSpec
from finetune.profiling.memory_search import OK, OOM, search_min_cap

log = logging.getLogger("finetune.profiling")
FAILED = "failed"


def run_fresh(spec: MeasureSpec, out: Path, timeout_s: float | None = None) -> dict:
    """Measure ``spec`` in a new Python process; its record, or a "failed" record with the
    tail of its stderr when it crashed or timed out (written to ``out`` either way)."""
    out = Path(out)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "finetune.profiling.measure", *spec_to_argv(spec, out)]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        record = {"status": FAILED, "error": f"timed out after {err.timeout} s"}
    else:
        if proc.stderr:
            log.info("measure stderr (tail):\n%s", proc.stderr[-4000:])
        if proc.returncode == 0 and out.exists():
            return json.loads(out.read_text())
        record = {"status": FAILED,
                  "error": f"exit code {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    record["spec"] = spec.__dict__
    write_json(out, record, indent=2)
    return record


def cuda_fits(spec: MeasureSpec, workdir: Path, timeout_s: float | None = None):
    """The oracle for :func:`search_min_cap`: does ``spec`` complete under ``cap`` GiB?

    Each probe is a fresh process capped with set_per_process_memory_fraction. A crash that
    is not an OOM raises: it says nothing about memory and must not be read as "too small".
    """
    def fits(cap_gib: float) -> str:
        out = Path(workdir) / f"probe-{cap_gib:g}GiB.json"
        record = run_fresh(replace(spec, memory_cap_gib=cap_gib), out, timeout_s)
        if record["status"] not in (OK, OOM):
            raise RuntimeError(f"probe at {cap_gib} GiB failed without an OOM: {record.get('error')}")
        return record["status"]
    return fits


def profile(spec: MeasureSpec, out: Path, granularity_gib: float = 1.0, oom_retries: int = 1,
            timeout_s: float | None = None, cuda: bool | None = None,
            model_name: str | None = None) -> dict:
    """One row of Table 3: the uncapped measurement (time, peak RSS, max_memory_allocated),
    plus on CUDA the paper's minimal memory cap found by binary search. ``model_name`` labels
    the row (default: the model folder's name)."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    record = run_fresh(spec, out, timeout_s)
    record["model"] = model_name or Path(spec.model_path).name
    if cuda and record["status"] == OK:
        with tempfile.TemporaryDirectory(prefix="cap-search-", dir=Path(out).parent) as work:
            search = search_min_cap(cuda_fits(spec, Path(work), timeout_s),
                                    record["cuda_total_gib"], granularity_gib, oom_retries)
        record["cuda_min_cap"] = search.to_dict()
        record["cuda_min_cap_gib"] = search.cap_gib
    write_json(out, record, indent=2)
    return record
