"""One Table 3 measurement in this process: ``python -m finetune.profiling.measure ... --out X.json``.

Runs warm-up steps, then the measured steps, of one method on fixed-shape batches and writes
a JSON record: time per step, the process's peak resident memory, and on CUDA
``max_memory_allocated`` under an optional ``set_per_process_memory_fraction`` cap (with
``--cuda-memory-history FILE``, also the allocator's history and what was live at its peak,
by the code that allocated it: :func:`finetune.profiling.allocations.cuda_peak_sites`). Run it in
a fresh process per measurement (:mod:`finetune.profiling.runner` does): peak RSS and the CUDA
caching allocator are per process, so sharing one would let one method's allocations inflate
the next one's.

Methods are built by the study's builders (:mod:`baselines`) so that the table measures the
code the study trains. The untuned methods (``original``, ``original-4bit``) are the frozen-model
floors: every weight frozen, the gradient flowing through the activations only (forward +
input-grad backward, no weight gradient, no optimizer), i.e. the least any fine-tuning method
can cost.

The step mirrors the study's Trainer step (finetune.train): optional bf16 autocast, backward,
gradient clipping, optimizer step, zero_grad, then the builder's callbacks' ``on_step_end``
(the SFT selector's drop-and-grow). It is a plain loop rather than a Trainer because the floor
has no optimizer for a Trainer to run, and per-step timing needs no Trainer machinery.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from artifacts.atomic import write_json
from finetune.profiling.memory_search import OK, OOM
from finetune.profiling.spec import MeasureSpec

SCHEMA_VERSION = 1


def peak_rss_mb() -> float:
    """The process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _apply_memory_cap(cap_gib: float | None) -> float | None:
    """Cap this process's CUDA memory; returns the device's total memory in GiB."""
    if not torch.cuda.is_available():
        if cap_gib is not None:
            raise ValueError("memory_cap_gib needs CUDA: set_per_process_memory_fraction has no "
                             "CPU counterpart (on CPU the record is the peak RSS)")
        return None
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    if cap_gib is not None:
        if cap_gib > total:
            raise ValueError(f"memory cap {cap_gib} GiB exceeds the device's {total:.2f} GiB")
        torch.cuda.set_per_process_memory_fraction(cap_gib / total, 0)
    torch.cuda.reset_peak_memory_stats()
    return total


HISTORY_ENTRIES = 2_000_000


def _start_history(spec: MeasureSpec, device: torch.device) -> int | None:
    """With ``cuda_memory_history``, record the allocator's history from the first step on
    (the model and its tuned state are built by then); the bytes allocated at that moment."""
    if spec.cuda_memory_history is None:
        return None
    from finetune.profiling.allocations import record_cuda_history

    return record_cuda_history(HISTORY_ENTRIES)


def _build(spec: MeasureSpec, bf16: bool):
    """(model, optimizer or None, callbacks, resolved method, trainable count) for spec.method,
    through the study's builders; an untuned method (original, original-4bit) is the floor."""
    from baselines import resolve_method
    from baselines.builder import BuildContext
    from baselines.registry import get_builder

    method = resolve_method(spec.method, None, spec.model_size)
    if "r" in method:
        method = resolve_method(spec.method, {"r": spec.rank}, spec.model_size)
    dtype = torch.bfloat16 if bf16 else torch.float32
    ctx = BuildContext.for_method(method, dtype, activation_checkpointing=spec.activation_checkpointing,
                                  bf16=bf16)
    builder = get_builder(method)
    model = builder.build(spec.model_path, method, ctx)
    if spec.activation_checkpointing:
        # What the Trainer does for TrainingArguments(activation_checkpointing=True).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = builder.optimizer(model, method, ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None and params:  # the Trainer's default: AdamW over the trainable parameters
        optimizer = torch.optim.AdamW(params, lr=ctx.lr, weight_decay=ctx.weight_decay)
    callbacks = builder.callbacks(model, method, optimizer)
    trainable = builder.trainable_parameters(model) if optimizer is not None else 0
    return model, optimizer, callbacks, method, trainable


def _batches(spec: MeasureSpec, vocab_size: int, device: torch.device):
    """Fixed-shape random token batches: time and memory depend on the shape, not the text,
    and a fixed length keeps every step the same size (real data would vary the padding)."""
    gen = torch.Generator().manual_seed(spec.seed)
    while True:
        ids = torch.randint(0, vocab_size, (spec.batch_size, spec.seq_len), generator=gen)
        yield ids.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _phase(selector, estimating: bool, reselections_before: int) -> str:
    """What the SFT selector did in a step: "plain"; "estimate" (SFT-AG's candidate gradients);
    "reselect" or "first-reselect" (drop-and-grow at this step's end; the first replaces every
    index, a one-off cost). The reselection overhead is computed from these labels."""
    if selector is not None and selector.num_reselections > reselections_before:
        return "first-reselect" if reselections_before == 0 else "reselect"
    return "estimate" if estimating else "plain"


def run_steps(spec: MeasureSpec, bf16: bool | None = None) -> dict:
    """Build the method, run warm-up + measured steps, return the record (no file I/O).

    ``bf16``: weights and autocast in bf16; default where the hardware supports it (the paper
    trains in bf16 on GPUs; fp32 on CPU). True on CPU lays tensors out as on a GPU, for
    :mod:`finetune.profiling.allocations`. Each step's forward, backward and optimizer step
    are marked ``measure.forward``, ``measure.backward`` and ``measure.optimizer_step`` for
    a profiler."""
    from torch.profiler import record_function
    from transformers import TrainerControl, TrainerState, TrainingArguments, set_seed

    from baselines.loading import bf16_supported

    if spec.threads:
        torch.set_num_threads(spec.threads)
    set_seed(spec.seed)
    device = _device()
    total_gib = _apply_memory_cap(spec.memory_cap_gib)
    if spec.cuda_memory_history is not None and device.type != "cuda":
        raise ValueError("cuda_memory_history needs CUDA (on CPU, finetune.profiling.allocations"
                         ".trace_allocations gives exact peaks)")
    bf16 = bf16_supported() if bf16 is None else bf16
    rss_start = current_rss_mb()
    model, optimizer, callbacks, method, trainable = _build(spec, bf16)
    model.train()
    rss_built = current_rss_mb()
    history_from = _start_history(spec, device)
    n_steps = spec.warmup_steps + spec.steps
    args = TrainingArguments(output_dir=os.devnull, max_steps=n_steps, report_to=[],
                             use_cpu=device.type == "cpu", bf16=bf16)
    state, control = TrainerState(max_steps=n_steps), TrainerControl()
    for cb in callbacks:
        cb.on_train_begin(args, state, control, optimizer=optimizer)
    params = [p for g in (optimizer.param_groups if optimizer else []) for p in g["params"]]
    selector = next((cb.selector for cb in callbacks if hasattr(cb, "selector")), None)
    batches = _batches(spec, model.config.vocab_size, device)
    step_times, hook_times, losses, phases = [], [], [], []
    for step in range(n_steps):
        ids = next(batches)
        estimating = selector is not None and selector.estimating
        reselections = selector.num_reselections if selector is not None else 0
        _sync(device)
        start = time.perf_counter()
        with record_function("measure.forward"), \
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        with record_function("measure.backward"):
            loss.backward()
        if optimizer is not None:
            with record_function("measure.optimizer_step"):
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        _sync(device)
        hooks_start = time.perf_counter()
        state.global_step = step + 1
        for cb in callbacks:
            cb.on_step_end(args, state, control)
        _sync(device)
        end = time.perf_counter()
        if step >= spec.warmup_steps:
            step_times.append(end - start)
            hook_times.append(end - hooks_start)
            losses.append(float(loss.detach()))
            phases.append(_phase(selector, estimating, reselections))
    record = {
        "status": OK,
        "method_config": {k: v for k, v in method.items() if not k.startswith("_")},
        "trainable_params": int(trainable),
        "step_times_s": step_times,
        "hook_times_s": hook_times,
        "step_phases": phases,
        "mean_step_s": statistics.fmean(step_times),
        "stdev_step_s": statistics.stdev(step_times) if len(step_times) > 1 else 0.0,
        "losses": losses,
        "start_rss_mb": rss_start,
        "built_rss_mb": rss_built,
        "peak_rss_mb": peak_rss_mb(),
        "bf16": bf16,
    }
    if history_from is not None:
        from finetune.profiling.allocations import cuda_peak_sites, stop_cuda_history

        snapshot = stop_cuda_history(spec.cuda_memory_history)
        record["cuda_peak_sites"] = cuda_peak_sites(snapshot, history_from,
                                                    max_entries=HISTORY_ENTRIES)
    if hasattr(model, "delta_grad_paths"):  # SFT: which delta-gradient kernel each layer ran
        record["sft_delta_grad_paths"] = model.delta_grad_paths()
    if device.type == "cuda":
        record["cuda_total_gib"] = total_gib
        record["cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        record["cuda_max_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return record


def _environment() -> dict:
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else (platform.processor() or platform.machine()), "pid": os.getpid()}


def measure(spec: MeasureSpec) -> dict:
    """The record for ``spec``; an out-of-memory under a cap is a result ("oom"), not an error."""
    started = time.time()
    try:
        record = run_steps(spec)
    except torch.OutOfMemoryError as err:
        record = {"status": OOM, "error": f"OutOfMemoryError: {str(err)[:500]}"}
    return {"schema": SCHEMA_VERSION, "spec": asdict(spec), **record,
            "environment": _environment(), "wall_time_s": time.time() - started}


def parse_args(argv: list[str] | None = None) -> tuple[MeasureSpec, Path]:
    """The command line mirrors MeasureSpec's fields; their defaults are MeasureSpec's."""
    p = argparse.ArgumentParser(prog="python -m finetune.profiling.measure", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, dest="model_path", help="HF folder or hub id")
    p.add_argument("--method", required=True, help="a config/methods/<name>.yaml (original: the frozen floor)")
    for f in fields(MeasureSpec):
        if f.name in ("model_path", "method"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action="store_true", default=f.default)
        else:
            kind = {"int": int, "float | None": float, "int | None": int}.get(f.type, str)
            p.add_argument(flag, type=kind, default=f.default)
    p.add_argument("--out", required=True, type=Path)
    a = vars(p.parse_args(argv))
    out = a.pop("out")
    return MeasureSpec(**a), out


def spec_to_argv(spec: MeasureSpec, out: Path) -> list[str]:
    """The command line that :func:`parse_args` turns back into ``spec``."""
    argv = ["--model", spec.model_path, "--method", spec.method, "--out", str(out)]
    for f in fields(MeasureSpec):
        value = getattr(spec, f.name)
        if f.name in ("model_path", "method") or value is None or value is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    spec, out = parse_args(argv)
    record = measure(spec)
    write_json(out, record, indent=2)
    print(json.dumps({k: record.get(k) for k in ("status", "mean_step_s", "peak_rss_mb",
                                                  "cuda_max_allocated_gib")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
