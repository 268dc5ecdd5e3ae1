"""Command line: one prediction, or the validations (module docstring of analysis.cost_model)."""
from __future__ import annotations

import argparse
import sys

from analysis.cost_model import DEFAULT_LAYOUT, LAYOUTS, GIB, Method, Setup, load_shape, predict
from analysis.cost_model import validate
from analysis.cost_model.timing import DEVICES

QUANTIZED = {"lora": "qlora", "sft-ag": "qsft-ag", "sft-ma": "qsft-ma", "original": "original-4bit"}
TERMS = ["weights", "trainable", "gradients", "optimizer", "optimizer_transient", "spiel_state",
         "spiel_estimation", "activations", "recompute", "loss_transient", "matrix_transient"]


def _pct(v: float) -> str:
    return f"{100 * v:+.0f}%"


def describe(model: str, method: Method, setup: Setup, layout: str = DEFAULT_LAYOUT,
             device: str | None = None, delta_grad: str | None = None) -> str:
    shape = load_shape(model)
    p = predict(shape, method, setup, device, layout, delta_grad)
    lines = [f"{shape.name}: {method.name} (rank {method.rank}{', 4-bit' if method.quantized else ''}), "
             f"batch {setup.batch_size} x {setup.seq_len} tokens, activation checkpointing "
             f"{'on' if setup.activation_checkpointing else 'off'}, {setup.device}",
             f"parameters {shape.total_params:,}; tuned {shape.lora_params(method.rank) if method.family != 'frozen' else 0:,}",
             "", "| term | GiB | floor GiB |", "|---|---|---|"]
    for term in TERMS:
        lines.append(f"| {term} | {getattr(p.memory, term) / GIB:.3f} | {getattr(p.floor, term) / GIB:.3f} |")
    lines.append(f"| peak at the loss's backward | {p.memory.loss_backward / GIB:.3f} | {p.floor.loss_backward / GIB:.3f} |")
    lines.append(f"| peak at the last block's backward | {p.memory.block_backward / GIB:.3f} | {p.floor.block_backward / GIB:.3f} |")
    lines.append(f"| peak at the first block's backward | {p.memory.backward_end / GIB:.3f} | {p.floor.backward_end / GIB:.3f} |")
    lines.append(f"| peak at the optimizer step | {p.memory.optimizer_step / GIB:.3f} | {p.floor.optimizer_step / GIB:.3f} |")
    lines += ["", f"peak allocated {p.peak_gib:.2f} GiB, {p.above_floor_gib:.2f} GiB above the frozen floor"]
    if p.cap_gib is not None:
        lines.append(f"minimal memory cap (the paper's measure) {p.cap_gib:.0f} GiB; GPU memory to "
                     f"request (+ allocator overhead + CUDA context) {p.gpu_total_gib:.1f} GiB")
    profile = device or ("a100" if setup.device == "cuda" else "cpu")
    lines.append(f"time per step {p.time_vs_floor:.2f} x the frozen floor's (~{p.mean_step_s:.2f} s on the "
                 f"{profile} profile; a plain step {p.plain_time_vs_floor:.2f} x, {p.step_s:.2f} s, of which "
                 f"{p.host_s:.3f} s launches and Python)")
    if method.family == "sft":
        lines.append(f"SpIEL layout {p.layout!r}, delta gradient on the {p.delta_grad} path, one "
                     f"reselection ~{p.reselection_s:.3f} s every {method.reselection_steps} steps")
    return "\n".join(lines)


def paper_report() -> str:
    mem = validate.paper_memory()
    lines = ["Memory: the minimal cap in GiB (paper) against the predicted cap, per cell; "
             "'paper code' prices SpIEL as the paper's implementation kept it (layout 'paper').", "",
             "| model | method | act. ckpt | paper | predicted peak | predicted cap | error | paper-code cap | error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in mem.itertuples():
        lines.append(f"| {r.model} | {r.method} | {'yes' if r.activation_checkpointing else 'no'} | "
                     f"{r.paper_gib:g} | {r.peak_gib:.1f} | {r.cap_gib:.0f} | {_pct(r.error)} | "
                     f"{r.paper_code_cap_gib:.0f} | {_pct(r.paper_code_error)} |")
    within = (mem["error"].abs() <= validate.GOAL).sum()
    within_paper = (mem["paper_code_error"].abs() <= validate.GOAL).sum()
    lines += ["", f"within {validate.GOAL:.0%}: {within} of {len(mem)} cells (ours), "
              f"{within_paper} of {len(mem)} (paper code)", "",
              "Time: step time over LoRA's (qLoRA's for 4-bit methods)", "",
              "| model | method | act. ckpt | paper | predicted | error |", "|---|---|---|---|---|---|"]
    for r in validate.paper_time().itertuples():
        if r.method_id in ("lora", "qlora"):
            continue
        lines.append(f"| {r.model} | {r.method_id} | {'yes' if r.activation_checkpointing else 'no'} | "
                     f"{r.paper_vs_lora:.3f} | {r.predicted_vs_lora:.3f} | {_pct(r.error)} |")
    return "\n".join(lines)


def gpu_report() -> str:
    """The H200's Table 3 beside the model, old layout ("plans") and the new one ("compact")."""
    old, new = validate.gpu("plans"), validate.gpu("compact")
    lines = ["| method | act. ckpt | GiB measured | predicted (plans) | error | plans, MLP on SDDMM | error | "
             "predicted (compact) | plain step / floor measured | predicted (plans) | error | "
             "predicted (compact) | reselection s measured | predicted (plans) | predicted (compact) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o, n in zip(old.itertuples(), new.itertuples()):
        measured = ("–" if o.measured_reselection_min_s != o.measured_reselection_min_s  # NaN: none
                    else f"{o.measured_reselection_min_s:.2f}-{o.measured_reselection_max_s:.2f}")
        resel = ("–", "–") if o.predicted_reselection_s != o.predicted_reselection_s else (
            f"{o.predicted_reselection_s:.2f}", f"{n.predicted_reselection_s:.3f}")
        mixed = o.old_run_mlp_sddmm_gib
        inferred = ("–", "–") if mixed != mixed else (  # NaN: not SpIEL
            f"{mixed:.2f}", _pct(o.old_run_mlp_sddmm_error))
        lines.append(f"| {o.method_id} | {'yes' if o.activation_checkpointing else 'no'} | "
                     f"{o.measured_gib:.2f} | {o.predicted_gib:.2f} | {_pct(o.memory_error)} | "
                     f"{inferred[0]} | {inferred[1]} | {n.predicted_gib:.2f} | "
                     f"{o.measured_plain_vs_floor:.2f} | {o.predicted_plain_vs_floor:.2f} | {_pct(o.time_error)} | "
                     f"{n.predicted_plain_vs_floor:.2f} | {measured} | {resel[0]} | {resel[1]} |")
    mem_ok = (old["memory_error"].abs() <= validate.GPU_MEMORY_GOAL).sum()
    mixed_ok = (old["old_run_mlp_sddmm_error"].fillna(old["memory_error"]).abs() <= validate.GPU_MEMORY_GOAL).sum()
    time_ok = (old["time_error"].abs() <= validate.GPU_TIME_GOAL).sum()
    lines += ["", f"old layout: memory within {validate.GPU_MEMORY_GOAL:.0%} in {mem_ok} of {len(old)} "
              f"cells on the dense path, {mixed_ok} of {len(old)} with the MLP on the SDDMM (inferred); "
              f"plain step over the floor within {validate.GPU_TIME_GOAL:.0%} in {time_ok} of {len(old)}"]
    return "\n".join(lines)


def cpu_report() -> str:
    lines = ["| method | act. ckpt | above floor MB measured | predicted | error | time vs floor measured | predicted | error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in validate.cpu().itertuples():
        lines.append(f"| {r.method_id} | {'yes' if r.activation_checkpointing else 'no'} | "
                     f"{r.measured_above_floor_mb:.0f} | {r.predicted_above_floor_mb:.0f} | {_pct(r.memory_error)} | "
                     f"{r.measured_time_vs_floor:.2f} | {r.predicted_time_vs_floor:.2f} | {_pct(r.time_error)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.cost_model", description=__doc__)
    p.add_argument("--model", help="config.json, a folder holding one, or a hub id (config.json only)")
    p.add_argument("--method", help="lora, qlora, sft-ag, sft-ma, qsft-ag, qsft-ma, original, original-4bit")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank; SpIEL's equivalent budget")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--4bit", dest="quantized", action="store_true",
                   help="the method's 4-bit variant (lora -> qlora, sft-ag -> qsft-ag, ...)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cuda: bf16 weights and autocast (the paper); cpu: fp32")
    p.add_argument("--layout", choices=sorted(LAYOUTS), default=DEFAULT_LAYOUT,
                   help="SpIEL's layout (analysis/cost_model/layout.py): compact (issue 21), plans "
                        "(before it), paper (the paper's implementation)")
    p.add_argument("--profile", choices=sorted(DEVICES),
                   help="the device profile for the time (default: a100 on cuda, cpu on cpu)")
    p.add_argument("--delta-grad", choices=["dense", "sddmm"],
                   help="force SpIEL's delta-gradient path (default: the dispatcher's on the "
                        "profile; sddmm is priced on the cpu profile only)")
    p.add_argument("--validate-paper", action="store_true", help="against the paper's Table 3")
    p.add_argument("--validate-cpu", action="store_true",
                   help="against this machine's Table 3 (docs/benchmarks.md section 3)")
    p.add_argument("--validate-gpu", action="store_true",
                   help="against one H200's Table 3 (docs/benchmarks.md, GPU section)")
    a = p.parse_args(argv)
    if a.validate_paper or a.validate_cpu or a.validate_gpu:
        reports = (([paper_report()] if a.validate_paper else []) + ([cpu_report()] if a.validate_cpu else [])
                   + ([gpu_report()] if a.validate_gpu else []))
        print("\n\n".join(reports))
        return 0
    if not a.model or not a.method:
        p.error("--model and --method are required (or --validate-paper / --validate-cpu / --validate-gpu)")
    name = QUANTIZED.get(a.method, a.method) if a.quantized else a.method
    try:
        method = Method.table3(name, a.rank)
        setup = Setup(a.batch_size, a.seq_len, a.activation_checkpointing, a.device)
        print(describe(a.model, method, setup, a.layout, a.profile, a.delta_grad))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
