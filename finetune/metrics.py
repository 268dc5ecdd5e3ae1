"""Per-step training records (loss, step time, peak memory) and the stop on a non-finite loss.

The Trainer only logs losses averaged over `logging_steps`; the paper's Table 3 and our resume
test need every optimizer step, so `StepRecorder` writes one JSONL row per step itself.
Peak memory is the CUDA allocator's peak for the step on GPU, and the process's peak RSS so far
on CPU (the kernel keeps no per-step peak).

Under DDP only process 0 writes, and a step's loss is the mean over the processes (each sees its
share of the batch), which is the loss one process at the whole batch records. Step time and
peak memory are process 0's.
"""
from __future__ import annotations

import json
import logging
import math
import resource
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from artifacts.atomic import write_text
from sft.distributed import all_reduce_mean_

log = logging.getLogger("finetune.train")


class NonFiniteLossError(FloatingPointError):
    pass


class NonFiniteWeightsError(FloatingPointError):
    pass


class DivergedError(FloatingPointError):
    """The loss rose to that of a uniform guess over the vocabulary: training blew the model up."""


def peak_memory_mb() -> tuple[float, str]:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"


class StepRecorder(TrainerCallback):
    """Accumulates the micro-batch losses of a step; appends a row to metrics.jsonl per step."""

    def __init__(self, path: Path, vocab_size: int | None = None):
        self.path = Path(path)
        self.step_loss = 0.0
        self.started = None
        self.lr = None
        # A model that predicts uniformly scores ln(vocab) nats/token: a run that starts well
        # below it (any pretrained model) and climbs back to it has diverged.
        self.uniform_loss = math.log(vocab_size) if vocab_size else None
        self.first_loss = None

    def add_loss(self, loss: torch.Tensor, next_step: int) -> None:
        value = float(loss)
        if not math.isfinite(value):
            raise NonFiniteLossError(f"loss is {value} at step {next_step}; stopping the run "
                                     "(lower the learning rate, or check the data near this step)")
        self.step_loss += value

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        # A resumed run keeps the rows of the steps its checkpoint covers, and drops the rest.
        rows = [json.dumps(row) for row in read_metrics(self.path) if row["step"] <= state.global_step] \
            if self.path.exists() else []
        write_text(self.path, "".join(r + "\n" for r in rows))
        if rows:
            self.first_loss = json.loads(rows[0])["loss"]

    def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.step_loss = 0.0
        self.lr = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else None
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        step_time = time.perf_counter() - self.started
        loss = self.step_loss
        if args.world_size > 1:  # a collective: every process takes part
            loss = float(all_reduce_mean_(torch.tensor(loss, device=args.device)))
        self._check_divergence(loss, state.global_step)
        if not state.is_world_process_zero:
            return
        memory, kind = peak_memory_mb()
        row = {"step": state.global_step, "loss": loss, "lr": self.lr, "step_time_s": step_time,
               "peak_memory_mb": round(memory, 1), "memory_kind": kind}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if args.logging_steps and state.global_step % args.logging_steps == 0:
            log.info("step %d/%d loss %.4f lr %.3g step %.2fs peak %.0f MB (%s)", state.global_step,
                     state.max_steps, row["loss"], row["lr"] or 0.0, row["step_time_s"], memory, kind)


    def _check_divergence(self, loss: float, step: int) -> None:
        if self.first_loss is None:
            self.first_loss = loss
        uniform = self.uniform_loss
        if uniform and self.first_loss < 0.9 * uniform and loss >= 0.98 * uniform:
            raise DivergedError(
                f"loss {loss:.3f} at step {step} is that of a uniform guess over the vocabulary "
                f"(ln V = {self.uniform_loss:.3f}), from {self.first_loss:.3f} at the start: "
                "training diverged; stopping the run (lower the learning rate)")


def read_metrics(path: Path) -> list[dict]:
    """The per-step rows; a last line torn by a kill (the row being appended) is dropped."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}:{i + 1}: not valid JSON (and not the torn last line)") from None
            log.warning("%s: dropping a torn last line", path)
    return rows
