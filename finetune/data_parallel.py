"""One run on N GPUs: `torchrun --standalone --nproc_per_node=N -m finetune.train ...` (DDP through
the Trainer), and the checks that refuse a run N processes cannot train as one process would.

The effective batch stays batch_size x grad_accum (each process accumulates grad_accum / N
micro-batches), so a run's schedule does not depend on N; only process 0 writes the run's files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Builders whose training is wrong under DDP, and why.
NOT_DATA_PARALLEL = {
    "sift": "its optimizer picks the mask from, and then drops, each process's own gradient in a "
            "hook that runs before DDP averages the gradients, so the processes would diverge",
}


def check_data_parallel(method: dict, grad_accum: int, world_size: int) -> None:
    """Refuse, before any process starts, a run that `world_size` processes cannot train as one
    process would."""
    if world_size <= 1:
        return
    reason = NOT_DATA_PARALLEL.get(method.get("builder"))
    if reason:
        raise ValueError(f"method {method.get('name')!r} cannot train on {world_size} GPUs "
                         f"(resources.train.gpu): {reason}; give its runs 1 GPU")
    if grad_accum % world_size:
        raise ValueError(f"train.grad_accum ({grad_accum}) must be a multiple of the number of GPUs "
                         f"({world_size}, resources.train.gpu): each GPU accumulates grad_accum / "
                         "GPUs micro-batches, so that the effective batch stays batch_size x grad_accum")


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """`torchrun --standalone --nproc_per_node=N -m finetune.train ARGV`, with this interpreter."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "finetune.train", *argv]


class DataParallelError(RuntimeError):
    """A process of a torchrun training failed; the message is that process's error."""


def _root_cause(error_file: Path, status: int) -> str:
    """The failing process's "Type: message", which torchrun copies into its error file."""
    if not error_file.exists():  # e.g. a process killed by a signal writes none
        return f"torchrun exited with status {status}"
    message = json.loads(error_file.read_text())["message"]
    return message if isinstance(message, str) else message["message"]


def train_data_parallel(nproc: int, argv: list[str], stdout=None) -> None:
    """Run the CLI on `nproc` processes; on failure raise the failing process's own error, so
    that a failure record names the cause, not an exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        error_file = Path(tmp) / "error.json"
        done = subprocess.run(torchrun_command(nproc, argv), stdout=stdout, stderr=subprocess.STDOUT,
                              env={**os.environ, "TORCHELASTIC_ERROR_FILE": str(error_file)})
        if done.returncode:
            raise DataParallelError(_root_cause(error_file, done.returncode))
