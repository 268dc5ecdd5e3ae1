"""The one training loop: every method, the same data, schedule and records (transformers Trainer).

Linear decay after `warmup_ratio` warmup, an effective batch of batch_size x grad_accum,
optional activation checkpointing, bf16 autocast where the hardware supports it. Methods plug
in through their builder (baselines.registry): the model, an optional optimizer (SM3, sparse
AdamW) and callbacks (the SFT selector). Checkpoints every `save_steps` under
out_dir/checkpoints/, and a restarted run resumes from the newest one; on CPU the final weights
are bit-identical to an uninterrupted run (the Trainer restores optimizer, scheduler, RNG and
data position).

The command line (`python -m finetune.train --method-file RUN/method.json ...`) reads the method
as the DAG resolved it, once, into the run's folder; under torchrun it trains one run on N GPUs
(finetune.data_parallel).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import record
from transformers import DataCollatorForSeq2Seq, TrainerCallback, TrainingArguments, set_seed

from artifacts.atomic import atomic_dir, write_json
from artifacts.layout import RunFolder
from baselines.builder import BuildContext
from baselines.loading import load_tokenizer, resolve_bf16
from baselines.registry import get_builder
from finetune.chat import IGNORE_INDEX, encode_messages
from finetune.train_config import resolve_train_cfg
from finetune.data_parallel import check_data_parallel, train_data_parallel
from finetune.fingerprint import claim_run_dir, matches, reuse_finished_run, run_fingerprint
from finetune.metrics import NonFiniteWeightsError, StepRecorder, read_metrics
from finetune.mixtures.io import read_rows
from sft import SftTrainer

log = logging.getLogger("finetune.train")

def encode_mixture(tokenizer, data_path: Path, max_length: int) -> tuple[list[dict], dict]:
    """(encoded examples, what max_length kept and cut: examples, assistant turns, tokens).

    As the reference, a conversation longer than max_length keeps its first max_length tokens
    (finetune.chat); one left with no trained token is dropped (`examples_dropped_no_target`)."""
    rows = read_rows(data_path)
    kept, counts = [], dict.fromkeys(("examples", "examples_truncated", "examples_dropped_no_target",
                                      "turns", "turns_kept", "tokens", "tokens_kept"), 0)
    for row in rows:
        encoded, info = encode_messages(tokenizer, row["messages"], max_length, row["template"])
        counts["examples"] += 1
        counts["examples_truncated"] += info["tokens"] > info["tokens_kept"]
        for key in ("turns", "turns_kept", "tokens"):
            counts[key] += info[key]
        if encoded is None:
            counts["examples_dropped_no_target"] += 1
        else:
            kept.append(encoded)
            counts["tokens_kept"] += info["tokens_kept"]
    if not kept:
        raise ValueError(f"{data_path}: no example has a trainable token within max_length="
                         f"{max_length}; refusing a zero-step run")
    counts.update(turns_cut=counts["turns"] - counts["turns_kept"],
                  tokens_cut=counts["tokens"] - counts["tokens_kept"], max_length=max_length)
    return kept, counts


CHECKPOINT_COMPLETE = "checkpoint-complete"


class MarkCheckpointComplete(TrainerCallback):
    """Runs after every other part of a checkpoint is on disk (Trainer state, optimizer, the
    builder's callbacks such as SpIEL's selector state): a checkpoint folder without this marker
    was torn by a kill and is skipped on resume."""

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            (Path(args.output_dir) / f"checkpoint-{state.global_step}" / CHECKPOINT_COMPLETE).touch()


def substitute_for_cpu(ctx: BuildContext, method: dict, allowed: bool) -> tuple[BuildContext, list[str]]:
    """Without CUDA, a GPU-only optimizer (bitsandbytes' paged ones) is an error, or with
    train.cpu_substitutes its nearest CPU equivalent; returns the context and what was swapped."""
    if torch.cuda.is_available() or not ctx.optimizer.startswith("paged_"):
        return ctx, []
    if not allowed:
        raise ValueError(f"method {method.get('name')!r}: optimizer {ctx.optimizer!r} needs CUDA "
                         "(bitsandbytes' paged optimizers); set train.cpu_substitutes: true to "
                         "train with adamw_torch on this machine")
    note = f"optimizer {ctx.optimizer} -> adamw_torch (no CUDA)"
    log.warning("substituting for CPU: %s", note)
    return replace(ctx, optimizer="adamw_torch"), [note]


class Preempted(RuntimeError):
    """A SIGTERM (a scheduler's preemption or time limit) stopped the run after it saved a
    checkpoint: running it again resumes there, so the failure is worth a retry."""


class CheckpointOnSigterm(TrainerCallback):
    """On SIGTERM, finish the optimizer step under way, save a checkpoint and stop, so that a
    retried job loses at most one step. Under DDP the processes agree (a max over them) on
    the step at which to stop, so that none waits in a collective for one that left."""

    def __init__(self):
        self.requested = False
        self.stopped_at: int | None = None
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._request)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _request(self, signum, frame):
        log.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")
        self.requested = True

    def on_step_end(self, args, state, control, **kwargs):
        requested = self.requested
        if args.world_size > 1:  # a collective: every process takes part, every step
            flag = torch.tensor(float(requested), device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            requested = bool(flag)
        if requested:
            control.should_save = control.should_training_stop = True
            self.stopped_at = state.global_step


def _checkpoint_step(checkpoint: str) -> int:
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def _planned_steps(trainer: SftTrainer) -> int:
    """The optimizer steps this run takes, as the Trainer counts them (max_steps, or epochs)."""
    return trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]


def last_complete_checkpoint(directory: Path) -> str | None:
    """The newest checkpoint whose save finished, or None."""
    done = [p for p in Path(directory).glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / CHECKPOINT_COMPLETE).exists()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


class HarnessTrainer(SftTrainer):
    """Trainer that hands each micro-batch loss to the StepRecorder (per-step loss, NaN stop).
    For an SftModel, sft.SftTrainer writes delta-only checkpoints and logs the selector; any
    other model falls through to transformers.Trainer."""

    def __init__(self, *args, recorder: StepRecorder, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = recorder

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.recorder.add_loss(loss, self.state.global_step + 1)
        return loss


def _training_args(cfg: dict, ctx: BuildContext, out_dir: Path, seed: int,
                   world_size: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(RunFolder(out_dir).checkpoints),
        max_steps=cfg["max_steps"], num_train_epochs=cfg["epochs"],
        per_device_train_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["grad_accum"] // world_size,
        learning_rate=ctx.lr, weight_decay=ctx.weight_decay,
        lr_scheduler_type="linear", warmup_steps=float(cfg["warmup_ratio"]),
        max_grad_norm=cfg["max_grad_norm"],
        logging_steps=cfg["logging_steps"], logging_nan_inf_filter=False,
        save_strategy="steps", save_steps=cfg["save_steps"], save_total_limit=cfg["save_total_limit"],
        activation_checkpointing=ctx.activation_checkpointing, optim=ctx.optimizer,
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=ctx.bf16, seed=seed, data_seed=seed, report_to=cfg["report_to"], remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=False,
    )


def train(model_path: str, data_path: Path, method: dict, train_cfg: dict, out_dir: Path,
          seed: int = 0, callbacks: list | None = None, donors: Sequence[Path] = ()) -> dict | None:
    """Train `method` on the mixture at `data_path`; write out_dir/{artifact/, metrics.jsonl,
    train_summary.json}; resume from out_dir/checkpoints/ when a checkpoint exists.

    `callbacks` are extra transformers TrainerCallbacks (monitoring, tests). `donors` are run
    folders that may hold this very run, finished (same fingerprint): the first such one is
    reused instead of training. Returns the summary; None on the other processes of a
    data-parallel run, which write nothing.
    """
    if method.get("builder") == "untuned":
        raise ValueError(f"method {method.get('name')!r} is an untuned model (builder: untuned): "
                         "it is evaluated, not trained")
    started = time.time()
    out_dir = Path(out_dir)
    folder = RunFolder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record_method(method, out_dir)
    cfg = resolve_train_cfg(train_cfg)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    check_data_parallel(method, cfg["grad_accum"], world_size)
    bf16 = resolve_bf16(cfg["bf16"])
    ctx = BuildContext.for_method(method, torch.bfloat16 if bf16 else torch.float32,
                                  activation_checkpointing=cfg["activation_checkpointing"],
                                  bf16=bf16, max_grad_norm=cfg["max_grad_norm"])
    ctx, substitutions = substitute_for_cpu(ctx, method, cfg["cpu_substitutes"])
    fingerprint = run_fingerprint(model_path, data_path, method, cfg, seed)
    if world_size == 1:
        reused = reuse_finished_run(donors, fingerprint, out_dir)
        if reused is not None:
            return reused
    if int(os.environ.get("RANK", "0")) == 0:  # under DDP the others wait for it (below)
        claim_run_dir(out_dir, fingerprint)
    set_seed(seed)

    tokenizer = load_tokenizer(model_path)
    dataset, data_counts = encode_mixture(tokenizer, Path(data_path), cfg["max_length"])
    builder = get_builder(method)
    model = builder.build(model_path, method, ctx)
    optimizer = builder.optimizer(model, method, ctx)
    recorder = StepRecorder(folder.metrics, vocab_size=len(tokenizer))
    sigterm = CheckpointOnSigterm()
    args = _training_args(cfg, ctx, out_dir, seed, world_size)
    trainer = HarnessTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        optimizers=(optimizer, None),
        callbacks=[recorder, *builder.callbacks(model, method, optimizer),
                   MarkCheckpointComplete(), sigterm, *(callbacks or [])],
        recorder=recorder)

    if args.world_size > 1:  # every process decides on resuming after process 0 claimed the folder
        torch.distributed.barrier()
    checkpoint_dir = folder.checkpoints
    resume = last_complete_checkpoint(checkpoint_dir) if matches(out_dir, fingerprint) else None
    if resume:
        log.info("resuming from %s", resume)
    if resume and _checkpoint_step(resume) >= _planned_steps(trainer):
        # Killed after its last checkpoint: resuming would train one step too many.
        log.info("%s covers every step: writing the run's outputs from it", resume)
        trainer._load_from_checkpoint(resume)
        trainer.state.global_step = _checkpoint_step(resume)
    else:
        with sigterm:
            trainer.train(resume_from_checkpoint=resume)
    if sigterm.stopped_at is not None:
        raise Preempted(f"SIGTERM at step {sigterm.stopped_at}: checkpoint-{sigterm.stopped_at} "
                        "is saved, and running the job again resumes from it")
    if not trainer.is_world_process_zero():
        return None

    check_finite_weights(trainer.model)
    with atomic_dir(folder.artifact) as tmp:
        builder.save(trainer.model, tmp, optimizer)
    metrics = read_metrics(folder.metrics)
    summary = {
        "status": "ok", "method_file": folder.method.name, "seed": seed, "train_cfg": cfg, "model_path": model_path,
        "data_path": str(data_path), "n_examples": len(dataset),
        "n_dropped_no_target": data_counts["examples_dropped_no_target"], "data": data_counts,
        "steps": trainer.state.global_step, "resumed_from": resume,
        "final_loss": metrics[-1]["loss"] if metrics else None,
        # over every step of the run, a resumed one's too (the Trainer's covers its last segment)
        "train_loss": sum(m["loss"] for m in metrics) / max(len(metrics), 1),
        "fingerprint": fingerprint["sha256"],
        "mean_step_time_s": sum(m["step_time_s"] for m in metrics) / max(len(metrics), 1),
        "peak_memory_mb": max((m["peak_memory_mb"] for m in metrics), default=None),
        "trainable_params": builder.trainable_parameters(trainer.model),
        "wall_time_s": time.time() - started, "bf16": bf16, "world_size": args.world_size,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "pid": os.getpid(),
        "substitutions": substitutions, "optimizer": ctx.optimizer,
        "activation_checkpointing": ctx.activation_checkpointing,
    }
    write_json(folder.summary, summary, indent=2, sort_keys=True)
    return summary


def check_finite_weights(model: torch.nn.Module) -> None:
    """A run whose loss stayed finite can still end with non-finite weights (the last optimizer
    step): check what will be saved, not only the loss."""
    for name, param in model.named_parameters():
        if param.requires_grad and not bool(torch.isfinite(param).all()):
            raise NonFiniteWeightsError(f"trained parameter {name} holds non-finite values after "
                                        "the last step; not saving it (lower the learning rate)")


def record_method(method: dict, run_dir: Path) -> None:
    """Write the resolved method to run_dir/method.json, or check that the one there (the DAG
    writes it before training) is this method: a run folder never holds two methods."""
    path = RunFolder(Path(run_dir)).method
    if not path.exists():
        write_json(path, method, indent=2, sort_keys=True)
    elif json.loads(path.read_text()) != method:
        raise ValueError(f"{path} holds another method than the one being trained")


def read_method(run_dir: Path) -> dict:
    """The resolved method a run was trained with."""
    return json.loads(RunFolder(Path(run_dir)).method.read_text())


def train_from_file(model_path: str, data_path: Path, train_cfg: dict, out_dir: Path, seed: int,
                    gpus: int = 1, stdout=None, donors: Sequence[Path] = ()) -> None:
    """Train the method resolved in out_dir/method.json: in this process on one device, or under
    torchrun on `gpus` GPUs (checked first, so a config error fails before any process starts);
    or reuse a donor that already finished this run (see `train`)."""
    method = read_method(out_dir)
    if gpus <= 1:
        train(model_path, data_path, method, train_cfg, out_dir, seed, donors=donors)
        return
    cfg = resolve_train_cfg(train_cfg)
    check_data_parallel(method, cfg["grad_accum"], gpus)
    fingerprint = run_fingerprint(model_path, data_path, method, cfg, seed)
    if reuse_finished_run(donors, fingerprint, out_dir) is not None:
        return
    claim_run_dir(out_dir, fingerprint)
    train_data_parallel(gpus, cli_argv(model_path, data_path, RunFolder(Path(out_dir)).method,
                                       train_cfg, out_dir, seed), stdout=stdout)


def cli_argv(model_path: str, data_path: Path, method_file: Path, train_cfg: dict, out_dir: Path,
             seed: int) -> list[str]:
    """The command line that :func:`parse_args` reads back."""
    return ["--model", model_path, "--data", str(data_path), "--method-file", str(method_file),
            "--train-cfg", json.dumps(train_cfg), "--out", str(out_dir), "--seed", str(seed)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m finetune.train", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="HF folder or hub id")
    p.add_argument("--data", required=True, type=Path, help="mixture JSONL (prompt, response)")
    p.add_argument("--method-file", required=True, type=Path,
                   help="the resolved method, JSON (baselines.resolve_method, written by the DAG)")
    p.add_argument("--train-cfg", type=json.loads, default={}, help="JSON: the config's `train` section")
    p.add_argument("--out", required=True, type=Path, help="the run folder")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


@record  # under torchrun, a failing process's error reaches torchrun's error file
def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    train(a.model, a.data, json.loads(a.method_file.read_text()), a.train_cfg, a.out, a.seed)


if __name__ == "__main__":
    main()
