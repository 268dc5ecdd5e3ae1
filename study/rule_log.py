"""What every Snakemake adapter does first and last: log to the rule's `log:` file, and sort a
failure into the two kinds the DAG treats differently.

- A deterministic failure (an invalid configuration, a non-finite loss, a model that cannot be
  built, a missing file) would fail the same way again: it becomes a failure record
  {"status": "failed", ...} in place of the output, so that the tables still build and show the
  cell as failed. Delete the file (or use --forcerun) to retry it by hand.
- A transient one (out of memory, an I/O or network error, a hub 5xx or 429, a signal such as
  Slurm's SIGTERM at the time limit) may pass on another attempt: it is raised again, the job
  exits non-zero, and Snakemake's `--retries` resubmits it (with more memory and time where
  the profile grows them with `attempt`); training resumes from its last complete checkpoint.
"""
from __future__ import annotations

import errno
import logging
import sys
import traceback
from pathlib import Path

from artifacts.atomic import write_json

# Exception classes (matched by name anywhere in an exception's class hierarchy, so that no
# heavy library is imported to classify) whose failures another attempt may not repeat.
TRANSIENT_TYPES = frozenset({
    "OutOfMemoryError",  # torch.OutOfMemoryError, torch.cuda.OutOfMemoryError
    "MemoryError", "ConnectionError", "TimeoutError", "BrokenPipeError",
    "Timeout", "ReadTimeout", "ConnectTimeout", "ChunkedEncodingError",  # requests / httpx
    "RemoteProtocolError", "NetworkError",
    "Preempted",  # finetune.train: a SIGTERM, after a checkpoint
    "KeyboardInterrupt",
})
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.ENOSPC, errno.ESTALE, errno.ETIMEDOUT,
                              errno.ECONNRESET, errno.ECONNREFUSED, errno.EHOSTUNREACH,
                              errno.ENETUNREACH, errno.EAGAIN, errno.EBUSY})
TRANSIENT_TEXT = ("CUDA out of memory", "CUDA error: out of memory", "NCCL", "killed by signal",
                  "Preempted:", "OutOfMemoryError:", "exited with status -9", "exited with status -15")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """True when another attempt of the same job may succeed (see the module docstring)."""
    for err in _chain(exc):
        names = {cls.__name__ for cls in type(err).__mro__}
        if names & TRANSIENT_TYPES:
            return True
        status = getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(status, int) and (status >= 500 or status == 429):
            return True
        if isinstance(err, OSError) and err.errno in TRANSIENT_ERRNOS:
            return True
        if any(text in str(err) for text in TRANSIENT_TEXT):  # e.g. a torchrun child's cause
            return True
    return False


def to_rule_log(log_path: str | Path) -> None:
    """Send logging, stdout and stderr to the rule's log file."""
    log = open(log_path, "w", buffering=1)
    sys.stdout = sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)


def record_failures(output: str | Path, fn) -> None:
    """Run `fn`. A deterministic failure becomes a failure record in `output`; a transient one
    is raised again, so that the job fails and Snakemake may retry it."""
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - sorted, printed to the rule log
        traceback.print_exc()
        if is_transient(exc):
            print(f"transient failure ({type(exc).__name__}): the job fails so that a retry "
                  "can resume it", file=sys.stderr)
            raise
        write_json(output, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, indent=2)
