"""Table 3 on one GPU, beside the cost model: the project's own GPU check.

    python -m bench.gpu_table3 --out gpu-table3/              # Llama-2-7b shapes, one CUDA GPU
    python -m bench.gpu_table3 --device cpu --config tiny.json --seq-len 16 --steps 2 --out x/

Builds a random-weight model from a config.json (default: the cost model's packaged
Llama-2-7b) directly on the device (bf16 on CUDA, fp32 on CPU) and saves it once; memory and
time depend on shapes, not on the weights' values. Then measures each Table 3 cell with
``finetune.profiling.measure`` in a fresh process (the runner's ``run_fresh``: peaks of one
cell never mix with the next), and writes ``table3.jsonl`` (a "run" line: versions, device,
the model built; then one "cell" line per cell, in the order measured: the measure record and
the cost model's prediction) and ``table3.md`` (measured beside ``analysis.cost_model``'s predictions on the
``--profile`` device profile and SpIEL ``--layout``).

Time plan on one H200 (the first run, docs/benchmarks.md's GPU section): building and saving
the 7b model ~25 s, then per cell ~20 s to load plus 33 steps of 0.15-0.7 s: 30-75 s a cell,
~45 s on average, so the 11 default cells take ~8.5 minutes. To stay under 8, cells are
ordered by importance, none starts after ``--budget-s`` (default 380 s) and none runs past
``--cell-timeout-s`` (default 100 s): at worst 380 + 100 = 480 s, the last cells (the
checkpointed ones) skipped and recorded as such. ``--cells`` picks fewer; a model folder on a
RAM disk (``--model-dir /dev/shm/...``) loads faster. ``--memory-history`` records each cell's
allocator history and lists, under the table, what was live at the peak by the code that
allocated it (where a cell's memory differs from the cost model's).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from analysis.cost_model import DEFAULT_LAYOUT, LAYOUTS, Method, Setup, load_shape, predict
from analysis.cost_model.timing import DEVICES
from artifacts.atomic import atomic_dir, write_jsonl, write_text
from finetune.profiling.runner import run_fresh
from finetune.profiling.spec import MeasureSpec

# Table 3's cells, most important first: the floors, each method's plain cell, the 4-bit trio,
# then activation checkpointing. "method:ckpt" turns checkpointing on.
DEFAULT_CELLS = ("original", "lora", "sft-ag", "sft-ma", "original-4bit", "qlora", "qsft-ag",
                 "qsft-ma", "lora:ckpt", "sft-ag:ckpt", "sft-ma:ckpt")
PACKAGED_7B = "llama-2-7b"
GIB = 2**30


def parse_cell(cell: str) -> tuple[str, bool]:
    method, _, flag = cell.partition(":")
    if flag not in ("", "ckpt"):
        raise ValueError(f"cell {cell!r}: expected METHOD or METHOD:ckpt")
    return method, flag == "ckpt"


def config_dict(config: str) -> tuple[dict, str]:
    """(config.json's dict without comment keys, where it came from): a file, a folder, or a
    config the cost model packages (its name or hub id)."""
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        source, text = str(path), path.read_text(encoding="utf-8")
    else:
        from importlib.resources import files

        from analysis.cost_model.shapes import PACKAGED

        name = PACKAGED.get(config, config)
        if name not in PACKAGED.values():
            raise ValueError(f"{config}: no such config.json file or folder, and not a packaged "
                             f"config ({sorted(PACKAGED.values())})")
        source = f"analysis/cost_model/{name}.json"
        text = files("analysis.cost_model").joinpath(f"{name}.json").read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}:{err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise ValueError(f"{source}: expected a config.json object with a 'model_type'")
    return {k: v for k, v in raw.items() if not k.startswith("_")}, source


def build_random_model(config: str, out: Path, device: str) -> dict:
    """Save a random-weight causal LM of ``config`` to ``out`` (built on ``device`` in the
    dtype the measurements train in: bf16 on CUDA, fp32 on CPU); returns what was built."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    raw, source = config_dict(config)
    # The config's own dtype (Llama-2: float16) would override the default set below.
    cfg = AutoConfig.for_model(**{k: v for k, v in raw.items() if k not in ("torch_dtype", "dtype")})
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    started = time.perf_counter()
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the training dtype: no fp32 7b on the way
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg)
    finally:
        torch.set_default_dtype(previous)
    built = time.perf_counter()
    wrong = {p.dtype for p in model.parameters()} - {dtype}
    if wrong:
        raise RuntimeError(f"{source}: the model was built in {sorted(map(str, wrong))}, not {dtype}")
    model.config.torch_dtype = dtype
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    del model
    return {"config": source, "params": params, "dtype": str(dtype).removeprefix("torch."),
            "build_s": built - started, "save_s": time.perf_counter() - built}


def plain_median_s(record: dict) -> float | None:
    """The median of the steps in which the SFT selector neither estimated nor reselected."""
    steps = [t for t, phase in zip(record.get("step_times_s", []), record.get("step_phases", []))
             if phase == "plain"]
    return statistics.median(steps) if steps else None


def reselection_s(record: dict) -> list[float]:
    """The reselection hooks' seconds (the first one, which replaces every index, excluded)."""
    return [t for t, phase in zip(record.get("hook_times_s", []), record.get("step_phases", []))
            if phase == "reselect"]


def measured_peak_gib(record: dict) -> float | None:
    if "cuda_max_allocated_gib" in record:
        return record["cuda_max_allocated_gib"]
    return record["peak_rss_mb"] / 1024 if "peak_rss_mb" in record else None


def _fmt(value, spec: str = ".2f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def markdown(rows: list[dict], config: str, profile: str, layout: str, device: str) -> str:
    """Measured beside predicted, per cell: peak memory, plain step and mean step over the
    floor without checkpointing (the 4-bit floor for 4-bit methods), reselection seconds."""
    plain = {r["method"]: plain_median_s(r) for r in rows if not r["ckpt"] and r.get("status") == "ok"}
    mean = {r["method"]: r.get("mean_step_s") for r in rows if not r["ckpt"] and r.get("status") == "ok"}
    memory = "max_memory_allocated GiB" if device == "cuda" else "peak RSS GiB"
    lines = [f"Model {config}; cost model: profile {profile}, SpIEL layout {layout}. Time over the "
             "frozen floor measured without checkpointing (4-bit floor for 4-bit methods).", "",
             f"| cell | status | {memory} | predicted peak GiB | plain step s | plain / floor | "
             "predicted | mean step s | mean / floor | predicted | reselection s | predicted |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        floor = "original-4bit" if r.get("quantized") else "original"
        p = r.get("predicted", {})
        ok = r.get("status") == "ok"
        step, floor_plain = plain_median_s(r) if ok else None, plain.get(floor)
        resel = reselection_s(r) if ok else []
        lines.append(
            f"| {r['cell']} | {r.get('status')} | {_fmt(measured_peak_gib(r) if ok else None)} | "
            f"{_fmt(p.get('peak_gib'))} | {_fmt(step, '.3f')} | "
            f"{_fmt(step / floor_plain if step and floor_plain else None)} | {_fmt(p.get('plain_vs_floor'))} | "
            f"{_fmt(r.get('mean_step_s') if ok else None, '.3f')} | "
            f"{_fmt(r['mean_step_s'] / mean[floor] if ok and mean.get(floor) else None)} | "
            f"{_fmt(p.get('mean_vs_floor'))} | "
            f"{(f'{min(resel):.2f}-{max(resel):.2f}' if resel else '–')} | {_fmt(p.get('reselection_s'), '.3f')} |")
    for r in rows:
        sites = r.get("cuda_peak_sites")
        if sites:
            lines += ["", f"{r['cell']}: live at the peak ({sites['peak_bytes'] / GIB:.2f} GiB), "
                      f"{sites['before_recording_bytes'] / GIB:.2f} GiB from before the first step, then by site:",
                      *(f"- {size / GIB:.3f} GiB {site}" for site, size in sites["sites"])]
    return "\n".join(lines) + "\n"


def prediction(config: str, method_id: str, ckpt: bool, args) -> dict:
    """The cost model's numbers for one cell; time over the floor without checkpointing."""
    shape = load_shape(config)
    method = Method.table3(method_id, args.rank)
    setup = Setup(args.batch_size, args.seq_len, ckpt, args.device)
    p = predict(shape, method, setup, device=args.profile, layout=args.layout)
    floor = Method.table3("original-4bit" if method.quantized else "original", args.rank)
    floor_s = predict(shape, floor, Setup(args.batch_size, args.seq_len, False, args.device),
                      device=args.profile).step_s
    return {"peak_gib": p.peak_gib, "plain_vs_floor": p.step_s / floor_s,
            "mean_vs_floor": p.mean_step_s / floor_s, "step_s": p.step_s,
            "reselection_s": p.reselection_s if method.family == "sft" else None,
            "delta_grad": p.delta_grad if method.family == "sft" else None}


def environment(device: str) -> dict:
    import platform

    import torch
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / GIB, cuda=torch.version.cuda)
    for package in ("peft", "bitsandbytes"):
        try:
            env[package] = __import__(package).__version__
        except ImportError:
            env[package] = None
    return env


@contextmanager
def cells_see_no_gpu(hide: bool):
    """With ``hide``, the cells' processes see no GPU (measure uses CUDA whenever it sees one);
    the caller's environment is restored afterwards."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hide:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if hide and before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        elif hide:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def run(args) -> list[dict]:
    with cells_see_no_gpu(args.device == "cpu"):
        return _run(args)


def _run(args) -> list[dict]:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is visible (use --device cpu)")
    cells = [(cell, *parse_cell(cell)) for cell in args.cells]
    for _, method_id, _ in cells:
        Method.table3(method_id, args.rank)  # an unknown method fails before the model is built
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = Path(args.model_dir) if args.model_dir else out / "model"
    built = None
    if not (model_dir / "config.json").is_file():
        built = build_random_model(args.config, model_dir, args.device)
        print(json.dumps({"built": built}), flush=True)
    header = {"kind": "run", "environment": environment(args.device), "model": built,
              "config": args.config, "profile": args.profile, "layout": args.layout,
              "cells": args.cells, "budget_s": args.budget_s}
    rows = []
    for cell, method_id, ckpt in cells:
        elapsed = time.perf_counter() - started
        row = {"kind": "cell", "cell": cell, "method": method_id, "ckpt": ckpt,
               "quantized": Method.table3(method_id, args.rank).quantized,
               "predicted": prediction(args.config, method_id, ckpt, args)}
        if elapsed > args.budget_s:
            row.update(status="skipped", error=f"budget: {elapsed:.0f} s > --budget-s {args.budget_s:g}")
        else:
            spec = MeasureSpec(str(model_dir), method_id, rank=args.rank, batch_size=args.batch_size,
                               seq_len=args.seq_len, steps=args.steps, warmup_steps=args.warmup_steps,
                               activation_checkpointing=ckpt, model_size=args.model_size,
                               threads=args.threads,
                               cuda_memory_history=str(out / "cells" / f"{cell.replace(':', '-')}.pickle")
                               if args.memory_history else None)
            cell_start = time.perf_counter()
            record = run_fresh(spec, out / "cells" / f"{cell.replace(':', '-')}.json", args.cell_timeout_s)
            row.update(record, cell_wall_s=time.perf_counter() - cell_start)
        rows.append(row)
        write_jsonl(out / "table3.jsonl", [header, *rows])
        print(json.dumps({k: row.get(k) for k in ("cell", "status", "mean_step_s", "cuda_max_allocated_gib",
                                                   "peak_rss_mb", "cell_wall_s", "error")}), flush=True)
    write_text(out / "table3.md", markdown(rows, args.config, args.profile, args.layout, args.device))
    print(f"done in {time.perf_counter() - started:.0f} s: {out / 'table3.md'}", flush=True)
    return rows


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(prog="python -m bench.gpu_table3", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=PACKAGED_7B,
                   help="config.json (file or folder) or a packaged cost-model config (default: llama-2-7b)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--out", required=True, help="folder for table3.jsonl, table3.md, cells/, model/")
    p.add_argument("--model-dir", help="where the random model is saved (default OUT/model); reused if present")
    p.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS), help="METHOD or METHOD:ckpt, in order")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--model-size", default="7b", help="the methods' per-size defaults (Table 4); '' for none")
    p.add_argument("--threads", type=int, help="torch threads in each cell (CPU)")
    p.add_argument("--budget-s", type=float, default=380.0, help="start no cell after this many seconds")
    p.add_argument("--cell-timeout-s", type=float, default=100.0, help="a cell that runs longer fails")
    p.add_argument("--profile", choices=sorted(DEVICES), help="cost model profile (default: h200 on cuda, cpu)")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default=DEFAULT_LAYOUT, help="SpIEL layout priced")
    p.add_argument("--memory-history", action="store_true",
                   help="record each cell's CUDA allocation history (cells/CELL.pickle, for "
                        "pytorch.org/memory_viz) and list what was live at its peak, by site; "
                        "recording slows every allocation, so take times from a run without it")
    args = p.parse_args(argv)
    args.profile = args.profile or ("h200" if args.device == "cuda" else "cpu")
    args.model_size = args.model_size or None
    try:
        for cell in args.cells:
            parse_cell(cell)
        config_dict(args.config)
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
