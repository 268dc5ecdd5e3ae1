"""One Table 3 measurement in this process: ``python -m finetune.profiling.measure ... --out X.json``.

Runs warm-up steps, then the measured steps, of one method on fixed-shape batches and writes
a JSON record: time per step, the process's peak resident memory, and on CUDA
``max_memory_allocated`` under an optional ``set_per_process_memory_fraction`` cap. Run it in
a fresh process per measurement (:mod:`finetune.profiling.runner` does): peak RSS and the CUDA
caching allocator are per process, so sharing one would let one method's allocations inflate
the next one's.

Methods are built by the study's registry (:mod:`baselines`) so that the table measures the
code the study trains. Two extra "methods" are the frozen-model floors (``frozen``,
``frozen-4bit``): every weight frozen, the gradient flowing through the activations only
(forward + input-grad backward, no weight gradient, no optimizer), i.e. the least any
fine-tuning method can cost.

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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from finetune.profiling.memory_search import OK, OOM

FLOORS = {"frozen": None, "frozen-4bit": "nf4"}
SCHEMA_VERSION = 1


@dataclass
class MeasureSpec:
    model_path: str
    method: str
    rank: int = 16                      # LoRA rank r; SFT budgets are the LoRA-equivalent count
    batch_size: int = 4
    seq_len: int = 128
    steps: int = 30                     # measured steps (paper: 30)
    warmup_steps: int = 2               # not timed: lazy init, allocator growth, first plans
    activation_checkpointing: bool = False
    model_size: str | None = None       # picks the method's per-size defaults (Table 4)
    threads: int | None = None
    memory_cap_gib: float | None = None  # CUDA only: set_per_process_memory_fraction
    seed: int = 0

    def __post_init__(self):
        for key in ("rank", "batch_size", "seq_len", "steps"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"MeasureSpec.{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup_steps < 0:
            raise ValueError(f"MeasureSpec.warmup_steps must be >= 0, got {self.warmup_steps}")


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


def _build(spec: MeasureSpec, bf16: bool):
    """(model, optimizer or None, callbacks, resolved method, trainable count) for spec.method."""
    from baselines.loading import load_base
    from baselines.registry import BuildContext, get_builder

    dtype = torch.bfloat16 if bf16 else torch.float32
    if spec.method in FLOORS:
        model = load_base(spec.model_path, dtype, FLOORS[spec.method])
        model.requires_grad_(False)
        # The gradient must flow through every block to the embeddings' output, as it does
        # for any method that tunes the first layer: that is the floor's backward.
        model.enable_input_require_grads()
        if spec.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model, None, [], {"name": spec.method, "quantize": FLOORS[spec.method]}, 0
    from baselines import resolve_method

    method = resolve_method(spec.method, {"r": spec.rank}, spec.model_size)
    builder = get_builder(method)
    ctx = BuildContext(dtype=dtype, gradient_checkpointing=spec.activation_checkpointing, bf16=bf16)
    model = builder.build(spec.model_path, method, ctx)
    if spec.activation_checkpointing:
        # What the Trainer does for TrainingArguments(activation_checkpointing=True).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = builder.optimizer(model, method, ctx)
    if optimizer is None:  # the Trainer's default: AdamW over the trainable parameters
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=float(method["lr"]),
                                      weight_decay=float(method.get("weight_decay", 0.0)))
    callbacks = builder.callbacks(model, method, optimizer)
    return model, optimizer, callbacks, method, builder.trainable_parameters(model)


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


def run_steps(spec: MeasureSpec) -> dict:
    """Build the method, run warm-up + measured steps, return the record (no file I/O)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments, set_seed

    from baselines.loading import bf16_supported

    if spec.threads:
        torch.set_num_threads(spec.threads)
    set_seed(spec.seed)
    device = _device()
    total_gib = _apply_memory_cap(spec.memory_cap_gib)
    bf16 = bf16_supported()  # the paper trains in bf16 on GPUs; fp32 on CPU
    rss_start = current_rss_mb()
    model, optimizer, callbacks, method, trainable = _build(spec, bf16)
    model.train()
    rss_built = current_rss_mb()
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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if optimizer is not None:
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


def write_json_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> tuple[MeasureSpec, Path]:
    p = argparse.ArgumentParser(prog="python -m finetune.profiling.measure", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="HF folder or hub id")
    p.add_argument("--method", required=True, help="a config/methods/<name>.yaml, or frozen / frozen-4bit")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--model-size", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--memory-cap-gib", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args(argv)
    spec = MeasureSpec(a.model, a.method, a.rank, a.batch_size, a.seq_len, a.steps, a.warmup_steps,
                       a.activation_checkpointing, a.model_size, a.threads, a.memory_cap_gib, a.seed)
    return spec, a.out


def spec_to_argv(spec: MeasureSpec, out: Path) -> list[str]:
    """The command line that :func:`parse_args` turns back into ``spec``."""
    argv = ["--model", spec.model_path, "--method", spec.method, "--rank", str(spec.rank),
            "--batch-size", str(spec.batch_size), "--seq-len", str(spec.seq_len),
            "--steps", str(spec.steps), "--warmup-steps", str(spec.warmup_steps),
            "--seed", str(spec.seed), "--out", str(out)]
    if spec.activation_checkpointing:
        argv.append("--activation-checkpointing")
    for flag, value in (("--model-size", spec.model_size), ("--threads", spec.threads),
                        ("--memory-cap-gib", spec.memory_cap_gib)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    spec, out = parse_args(argv)
    record = measure(spec)
    write_json_atomic(out, record)
    print(json.dumps({k: record.get(k) for k in ("status", "mean_step_s", "peak_rss_mb",
                                                  "cuda_max_allocated_gib")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
