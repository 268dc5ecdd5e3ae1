"""Table 3: memory and time per method, from the measurement records of finetune.profiling.

Every row is one (model, method, activation checkpointing) record. The ratios sit side by side
from the same run: each method against LoRA (qLoRA for the 4-bit methods, as the paper
compares them) and against the frozen-model floor (every weight frozen, forward + input-grad
backward; 4-bit floor for the 4-bit methods) at the same checkpointing setting. Memory on CPU
is the process's peak RSS; "above floor" is what the methods differ in. On CUDA the paper's
minimal memory cap and max_memory_allocated fill their columns. Given each model's config.json,
the cost model (analysis.cost_model) adds its predictions beside the measurements: memory above
the floor, the peak (on CUDA the minimal cap, on CPU the allocated bytes, without the
interpreter's own resident memory) and the step time over the floor's.

    python -m study.table3 results/profile/*/*/*.json --out-dir results
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd

from analysis.cost_model import Method, Setup, load_shape, predict
from artifacts.atomic import atomic_path, write_text
# The goals on our CPU: (method, quantity, bound). time ratios are step-time ratios.
GOALS = [("sft-ag", "time_vs_lora", 1.00), ("sft-ma", "time_vs_lora", 0.95),
         ("sft-ag", "time_vs_floor", 1.15), ("sft-ma", "time_vs_floor", 1.15),
         ("sft-ag", "above_floor_vs_lora", 1.00), ("sft-ma", "above_floor_vs_lora", 1.00)]
RESELECTION_GOAL = 0.03
PREDICTED = ("predicted_above_floor_mb", "predicted_peak_gib", "predicted_time_vs_floor")


def read_records(paths: list[Path]) -> list[dict]:
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable measurement record ({err})") from None
        if "spec" not in record or "status" not in record:
            raise ValueError(f"{path}: a measurement record needs 'spec' and 'status'")
        record["_path"] = str(path)
        records.append(record)
    return records


def _key(record: dict) -> tuple[str, str, bool]:
    spec = record["spec"]
    model = record.get("model") or Path(spec["model_path"]).name
    return model, spec["method"], bool(spec["activation_checkpointing"])


def reselection_overhead(record: dict) -> float | None:
    """The drop-and-grow cost amortised over the method's S steps: the extra time, over the
    median plain step, of the last steady-state reselection's step and of the SFT-AG
    estimation steps before it, divided by S plain steps. The first reselection (every index
    replaced, once per run) is left out. None when the window holds no steady-state
    reselection (it needs warm-up + steps >= gamma + S) or no plain step to compare with."""
    period = (record.get("method_config") or {}).get("reselection_steps")
    phases, times = record.get("step_phases") or [], record.get("step_times_s") or []
    plain = [t for t, phase in zip(times, phases) if phase == "plain"]
    if not period or not plain or "reselect" not in phases:
        return None
    base = statistics.median(plain)
    end = len(phases) - 1 - phases[::-1].index("reselect")
    start = end
    while start > 0 and phases[start - 1] == "estimate":
        start -= 1
    extra = sum(times[start:end + 1]) - (end + 1 - start) * base
    return extra / (period * base)


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) and pd.notna(a) and pd.notna(b) else None


def _label(facts: dict, method: str) -> str:
    fact = facts.get(method, {})
    label = fact.get("label", method)
    return f"{label}, frozen (floor)" if fact.get("untuned") else label


def _order(facts: dict) -> dict[str, tuple[int, int]]:
    """Rows grouped by floor (groups in the order the methods are given), the floor first."""
    groups: list[str] = []
    for method, fact in facts.items():
        floor = fact.get("floor") or method
        groups += [floor] if floor not in groups else []
    listed = list(facts)
    return {m: (groups.index(f.get("floor") or m), -1 if not f.get("floor") else listed.index(m))
            for m, f in facts.items()}


def predicted(record: dict, config: str) -> dict:
    """The cost model's columns for one record (its spec, its resolved method where the record
    has one) on the model of ``config`` (a config.json, its folder or a hub id)."""
    spec = record["spec"]
    resolved = record.get("method_config") or {}
    method = (Method.from_resolved({**resolved, "name": spec["method"]}) if "builder" in resolved
              else Method.table3(spec["method"], int(spec.get("rank", 16))))
    cuda = record.get("cuda_total_gib") is not None
    setup = Setup(int(spec["batch_size"]), int(spec["seq_len"]), bool(spec["activation_checkpointing"]),
                  "cuda" if cuda else "cpu")
    p = predict(load_shape(config), method, setup)
    return {"predicted_above_floor_mb": p.above_floor_gib * 1024,
            "predicted_peak_gib": p.cap_gib if cuda else p.peak_gib,
            "predicted_time_vs_floor": p.time_vs_floor}


def build_table3(records: list[dict], facts: dict[str, dict],
                 model_configs: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per record. `facts` (method -> its method file's label, untuned, floor and
    reference, as baselines.method_facts gives them) decides what each row is compared with
    and the row order: each floor, then the methods measured against it, in the given order.
    `model_configs` (model -> its config.json, folder or hub id) turns on the cost model's
    predicted columns; a model it cannot predict gets a note saying why."""
    by_key = {}
    for r in records:
        if _key(r) in by_key:
            raise ValueError(f"{r['_path']}: duplicate measurement of {_key(r)} "
                             f"(also {by_key[_key(r)]['_path']})")
        by_key[_key(r)] = r

    def value(model, method, ac, field):
        r = by_key.get((model, method, ac))
        return r.get(field) if r and r["status"] == "ok" else None

    rows = []
    for (model, method, ac), r in by_key.items():
        ok = r["status"] == "ok"
        spec = r["spec"]
        time_s, peak = (r.get("mean_step_s"), r.get("peak_rss_mb")) if ok else (None, None)
        fact = facts.get(method, {})
        floor, ref = fact.get("floor") or method, fact.get("reference")
        floor_peak = value(model, floor, ac, "peak_rss_mb")
        above = peak - floor_peak if peak is not None and floor_peak is not None else None
        ref_above = None
        if ref is not None:
            ref_peak = value(model, ref, ac, "peak_rss_mb")
            ref_above = ref_peak - floor_peak if ref_peak is not None and floor_peak is not None else None
        notes = [] if ok else [f"{r['status']}: {str(r.get('error', ''))[:200]}"]
        if ok and not fact.get("floor") and not fact.get("untuned"):
            notes.append("no floor/LoRA ratios: method outside Table 3")
        prediction = dict.fromkeys(PREDICTED)
        if model_configs is not None:
            try:
                prediction = predicted(r, model_configs.get(model, spec["model_path"]))
            except ValueError as err:
                notes.append(f"no prediction: {err}")
        rows.append({
            "model": model, "method": _label(facts, method), "method_id": method,
            "activation_checkpointing": ac, "status": r["status"],
            "trainable_params": r.get("trainable_params"),
            "batch_size": spec["batch_size"], "seq_len": spec["seq_len"], "steps": spec["steps"],
            "time_s": time_s,
            "time_vs_lora": _ratio(time_s, value(model, ref, ac, "mean_step_s")) if ref else None,
            "time_vs_floor": _ratio(time_s, value(model, floor, ac, "mean_step_s")),
            "peak_rss_mb": peak, "above_floor_mb": above,
            "above_floor_vs_lora": _ratio(above, ref_above) if ref else None,
            "peak_vs_floor": _ratio(peak, floor_peak),
            "reselection_overhead": reselection_overhead(r) if ok else None,
            "cuda_min_cap_gib": r.get("cuda_min_cap_gib"),
            "cuda_max_allocated_gib": r.get("cuda_max_allocated_gib"),
            **prediction,
            "notes": "; ".join(notes),
        })
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError("no measurement records: nothing to tabulate")
    rank = _order(facts)
    table["_order"] = table["method_id"].map(lambda m: rank.get(m, (len(rank), 0)))
    table = table.sort_values(["model", "activation_checkpointing", "_order", "method_id"])
    return table.drop(columns="_order").reset_index(drop=True)


def performance_goals(table: pd.DataFrame, facts: dict[str, dict]) -> pd.DataFrame:
    """The issue's goals per (model, checkpointing): measured value, bound, met (None = no data)."""
    rows = []
    for (model, ac), group in table.groupby(["model", "activation_checkpointing"], sort=True):
        by_method = group.set_index("method_id")
        for method, column, bound in GOALS:
            v = by_method[column].get(method) if method in by_method.index else None
            v = None if v is None or pd.isna(v) else float(v)
            rows.append({"model": model, "activation_checkpointing": ac,
                         "goal": f"{_label(facts, method)} {column} <= {bound:g}", "measured": v,
                         "met": None if v is None else v <= bound})
        for method in ("sft-ag", "sft-ma"):
            v = by_method["reselection_overhead"].get(method) if method in by_method.index else None
            v = None if v is None or pd.isna(v) else float(v)
            rows.append({"model": model, "activation_checkpointing": ac,
                         "goal": f"{_label(facts, method)} reselection overhead <= {RESELECTION_GOAL:.0%}",
                         "measured": v, "met": None if v is None else v <= RESELECTION_GOAL})
    return pd.DataFrame(rows)


def _fmt(v, spec: str) -> str:
    return "" if v is None or pd.isna(v) else format(v, spec)


def to_markdown(table: pd.DataFrame, goals: pd.DataFrame, caption: str) -> str:
    head = ("| model | method | act. ckpt | trainable | s/step | vs LoRA | vs floor | predicted "
            "| peak RSS MB | above floor MB | predicted | vs LoRA | CUDA cap GiB | CUDA max alloc GiB "
            "| predicted peak GiB | notes |")
    lines = [caption, "", head, "|" + "---|" * 16]
    for r in table.itertuples():
        lines.append("| " + " | ".join([
            r.model, r.method, "yes" if r.activation_checkpointing else "no",
            _fmt(r.trainable_params, ","), _fmt(r.time_s, ".2f"), _fmt(r.time_vs_lora, ".2f"),
            _fmt(r.time_vs_floor, ".2f"), _fmt(r.predicted_time_vs_floor, ".2f"),
            _fmt(r.peak_rss_mb, ".0f"), _fmt(r.above_floor_mb, ".0f"),
            _fmt(r.predicted_above_floor_mb, ".0f"), _fmt(r.above_floor_vs_lora, ".2f"),
            _fmt(r.cuda_min_cap_gib, "g"), _fmt(r.cuda_max_allocated_gib, ".2f"),
            _fmt(r.predicted_peak_gib, ".2f"), r.notes]) + " |")
    lines += ["", "## Performance goals", "", "| model | act. ckpt | goal | measured | met |",
              "|---|---|---|---|---|"]
    for g in goals.itertuples():
        met = "n/a (not measured)" if g.met is None else ("yes" if g.met else "**no**")
        lines.append(f"| {g.model} | {'yes' if g.activation_checkpointing else 'no'} | {g.goal} "
                     f"| {_fmt(g.measured, '.3f')} | {met} |")
    return "\n".join(lines) + "\n"


def figure_memory_time(table: pd.DataFrame, path: Path) -> None:
    """Memory against time per step, one marker per method, hollow = activation checkpointing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cuda = table["cuda_min_cap_gib"].notna().any()
    column, label = (("cuda_min_cap_gib", "minimal CUDA memory cap (GiB)") if cuda
                     else ("peak_rss_mb", "peak RSS (MB)"))
    ok = table[table["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (method, group) in enumerate(ok.groupby("method_id", sort=False)):
        for ac, sub in group.groupby("activation_checkpointing"):
            ax.scatter(sub["time_s"], sub[column], s=60, label=f"{sub['method'].iloc[0]}"
                       + (" (act. ckpt)" if ac else ""), edgecolors=colors[i % len(colors)],
                       facecolors="none" if ac else colors[i % len(colors)], linewidths=1.5)
    ax.set_xlabel("mean time per step (s)")
    ax.set_ylabel(label)
    models = ", ".join(sorted(table["model"].unique()))
    ax.set_title(f"Table 3 as a figure: memory vs time ({models})")
    if ok.empty:
        ax.text(0.5, 0.5, "no successful measurement", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=7, loc="best")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)


def caption_for(table: pd.DataFrame) -> str:
    first = table.iloc[0]
    return (f"Table 3: training memory and mean time per step (batch {first.batch_size} x "
            f"{first.seq_len} tokens, {first.steps} measured steps after warm-up, one fresh "
            "process per measurement). Ratios: vs LoRA (qLoRA for 4-bit methods) and vs the "
            "frozen-model floor at the same checkpointing setting. 'predicted': the cost model "
            "(analysis.cost_model) from the model's config.json: step time over the floor's, "
            "memory above the floor, and the peak (CUDA: the minimal cap; CPU: allocated bytes, "
            "without the interpreter's own resident memory).")


def write_table3(records: list[dict], facts: dict[str, dict], csv: Path, md: Path,
                 png: Path, model_configs: dict[str, str] | None = None) -> pd.DataFrame:
    table = build_table3(records, facts, model_configs)
    goals = performance_goals(table, facts)
    write_text(Path(csv), table.to_csv(index=False))
    write_text(Path(md), to_markdown(table, goals, caption_for(table)))
    figure_memory_time(table, Path(png))
    return table
