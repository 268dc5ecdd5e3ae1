"""Our Tables 1-3 against the paper's published ones, cell by cell.

The paper's values ship as package data (`analysis/paper_reference/table{1,2,3}.csv`, each row
with the table, row and column it comes from). For every cell: ours, the paper's, the difference
(ours - paper) and, where our table carries an interval (`<column>_low` / `<column>_high`),
whether the paper's value lies inside it. An empty cell on either side says why. A model is
matched to the paper's by its hub id in the config's `models` section; any other model gets the
line "no published counterpart for <model> (<hub id or 'packaged'>)".

    python -m analysis.paper_comparison --table 1 --ours results/table1.csv \
        --config config/config.yaml --config config/paper.yaml --out results/table1_vs_paper.md
"""
from __future__ import annotations

import argparse
import re
from importlib.resources import files
from pathlib import Path

import pandas as pd

from analysis.tables import BENCH_LABELS, BENCHMARK_LABELS, DERIVED_SUFFIXES, MIXTURE_LABELS
from artifacts.atomic import write_text

# The paper fine-tunes the base Llama-2 checkpoints (the -hf repos are their transformers copies).
PAPER_MODELS = {
    "meta-llama/llama-2-7b-hf": "Llama-2-7b", "meta-llama/llama-2-7b": "Llama-2-7b",
    "meta-llama/llama-2-13b-hf": "Llama-2-13b", "meta-llama/llama-2-13b": "Llama-2-13b",
}
PAPER = "Ansell et al., Scaling Sparse Fine-Tuning to Large Language Models (arXiv 2401.16405)"
# Table 3: our column holding each of the paper's quantities.
TABLE3_QUANTITIES = {"memory": ("cuda_min_cap_gib", "GB"), "time": ("time_s", "s/step")}
OUT_COLUMNS = ["model", "paper_model", "method", "method_id", "cell", "ours", "ours_low",
               "ours_high", "paper", "difference", "paper_in_interval", "ours_note",
               "paper_note", "source"]
_NOTE = re.compile(r"^(?P<reason>.*) \((?P<cols>all|[^()]+/[^()]+)\)$", re.S)


def reference(table: int) -> pd.DataFrame:
    """The paper's Table `table` (1, 2 or 3), one row per cell; `value` is NaN where the paper
    leaves the cell empty and `note` says why."""
    if table not in (1, 2, 3):
        raise ValueError(f"the paper has Tables 1-3 to compare with, not {table!r}")
    path = files("analysis.paper_reference").joinpath(f"table{table}.csv")
    with path.open(encoding="utf-8") as fh:
        ref = pd.read_csv(fh, dtype=str, keep_default_na=False)
    ref["value"] = pd.to_numeric(ref["value"].where(ref["value"] != ""), errors="raise")
    if table == 3:
        ref["activation_checkpointing"] = ref["activation_checkpointing"].map(_as_bool)
    return ref


def paper_model(name: str, models: dict) -> tuple[str | None, str]:
    """(the paper's model, or None; the hub id, 'packaged' or why the model is unknown).

    `name` is a key of the config's `models` section; a Table 3 record may carry the hub id or
    its last part instead, so those match too."""
    entry = models.get(name)
    if entry is None:
        entry = next((e for e in models.values() if isinstance(e, dict) and e.get("hub")
                      and name in (e["hub"], e["hub"].rsplit("/", 1)[-1])), None)
    if entry is None:
        return None, "not in the models config"
    hub = entry.get("hub")
    if not hub:
        return None, "packaged"
    return PAPER_MODELS.get(str(hub).lower()), str(hub)


def _as_bool(v) -> bool:
    if isinstance(v, str):
        if v.strip().lower() in ("true", "1", "yes"):
            return True
        if v.strip().lower() in ("false", "0", "no", ""):
            return False
        raise ValueError(f"not a boolean: {v!r}")
    return bool(v)


def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if pd.isna(v) else v


def _text(v) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def note_reasons(notes: str, columns: list[str]) -> dict[str, str]:
    """analysis.tables writes `notes` as "<reason> (<col>, <col>); <reason> (all)". A reason
    may itself contain "; ", so segments join until one ends in a column list."""
    out: dict[str, str] = {}
    buf = ""
    for seg in notes.split("; ") if notes else []:
        buf = f"{buf}; {seg}" if buf else seg
        m = _NOTE.match(buf)
        if m:
            cols = columns if m["cols"] == "all" else [c.strip() for c in m["cols"].split(",")]
            for col in cols:
                out.setdefault(col, m["reason"])
            buf = ""
    if buf:  # not in the expected form: it may concern any empty cell
        for col in columns:
            out.setdefault(col, buf)
    return out


def _method_id(row) -> str:
    """Our tables carry each row's method id (the method file's name) beside its label."""
    if "method_id" in row and _text(row["method_id"]):
        return str(row["method_id"])
    raise ValueError(f"our table's row {dict(row)} has no method_id column")


def ours_cells(table: int, ours: pd.DataFrame) -> pd.DataFrame:
    """Our table (as analysis.tables / analysis.table3 write it) as one row per cell."""
    rows = []
    if table in (1, 2):
        value_cols = [c for c in ours.columns if "/" in c and not c.endswith(DERIVED_SUFFIXES)]
        for _, r in ours.iterrows():
            reasons = note_reasons(_text(r.get("notes")), value_cols)
            for col in value_cols:
                value = _num(r[col])
                rows.append({"model": str(r["model"]), "method": _text(r.get("method")),
                             "method_id": _method_id(r), "cell": col, "ours": value,
                             "ours_low": _num(r.get(f"{col}_low")),
                             "ours_high": _num(r.get(f"{col}_high")),
                             "ours_note": "" if value is not None else
                             reasons.get(col, "empty in our table (no reason given)")})
    else:
        for _, r in ours.iterrows():
            ok = _text(r.get("status")) in ("", "ok")
            for quantity, (col, _) in TABLE3_QUANTITIES.items():
                value = _num(r.get(col)) if ok else None
                if value is not None:
                    note = ""
                elif not ok:
                    note = _text(r.get("notes")) or f"measurement {_text(r.get('status'))}"
                elif col not in ours.columns:
                    note = f"our table has no {col} column"
                elif quantity == "memory":
                    note = ("no CUDA memory cap in this measurement (a CPU run records peak RSS, "
                            "not the paper's GPU memory)")
                else:
                    note = "no time in this measurement"
                rows.append({"model": str(r["model"]), "method": _text(r.get("method")),
                             "method_id": _method_id(r),
                             "cell": _t3_cell(quantity, _as_bool(r["activation_checkpointing"])),
                             "ours": value, "ours_low": _num(r.get(f"{col}_low")),
                             "ours_high": _num(r.get(f"{col}_high")), "ours_note": note})
    cells = pd.DataFrame(rows, columns=["model", "method", "method_id", "cell", "ours",
                                        "ours_low", "ours_high", "ours_note"])
    dup = cells.duplicated(["model", "method_id", "cell"], keep=False)
    if dup.any():
        first = cells[dup].iloc[0]
        raise ValueError(f"our table has more than one row for {first.model} {first.method_id}")
    return cells


def _t3_cell(quantity: str, checkpointing: bool) -> str:
    return f"{quantity}/{'ckpt' if checkpointing else 'nockpt'}"


def reference_cells(table: int, ref: pd.DataFrame) -> pd.DataFrame:
    out = ref.rename(columns={"model": "paper_model", "value": "paper", "note": "paper_note"})
    if table in (1, 2):
        out["cell"] = out["role"] + "/" + out["benchmark"]
    else:
        out["cell"] = [_t3_cell(q, ac) for q, ac in
                       zip(out["quantity"], out["activation_checkpointing"])]
    return out[["paper_model", "method", "method_id", "cell", "paper", "paper_note", "source"]]


def compare(table: int, ours: pd.DataFrame, models: dict) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one row per cell of every model with a published counterpart, {model: line} for each
    model without). Cells: the paper's, in its order, then those only our table has."""
    ref = reference_cells(table, reference(table))
    cells = ours_cells(table, ours)
    frames, unmatched = [], {}
    for model in dict.fromkeys(cells["model"]):
        target, hub = paper_model(model, models)
        if target is None:
            unmatched[model] = f"no published counterpart for {model} ({hub})"
            continue
        mine = cells[cells["model"] == model].drop(columns="model")
        theirs = ref[ref["paper_model"] == target]
        merged = theirs.merge(
            mine, on=["method_id", "cell"], how="outer", suffixes=("", "_ours"), indicator=True,
            sort=False)
        # an outer merge sorts the keys: the paper's order first, then ours for our extra cells
        order = {key: i for i, key in enumerate(zip(theirs["method_id"], theirs["cell"]))}
        for i, key in enumerate(zip(mine["method_id"], mine["cell"])):
            order.setdefault(key, len(theirs) + i)
        merged["_order"] = [order[k] for k in zip(merged["method_id"], merged["cell"])]
        merged = merged.sort_values("_order", kind="stable").drop(columns="_order")
        merged["model"] = model
        merged["paper_model"] = target
        merged["method"] = merged["method"].where(merged["method"].notna(), merged["method_ours"])
        our_methods, our_cols = set(mine["method_id"]), set(mine["cell"])
        for i in merged.index[merged["_merge"] == "left_only"]:
            method, cell = merged.at[i, "method_id"], merged.at[i, "cell"]
            merged.at[i, "ours_note"] = ("no row for this method in our table"
                                         if method not in our_methods
                                         else "no such column in our table" if cell not in our_cols
                                         else "not in our table")
        their_methods, their_cols = set(theirs["method_id"]), set(theirs["cell"])
        for i in merged.index[merged["_merge"] == "right_only"]:
            method, cell = merged.at[i, "method_id"], merged.at[i, "cell"]
            merged.at[i, "paper_note"] = (
                f"the paper's Table {table} has no row for this method"
                if method not in their_methods else
                f"the paper's Table {table} has no such column" if cell not in their_cols
                else f"not in the paper's Table {table}")
            merged.at[i, "source"] = ""
        frames.append(merged)
    if not frames:
        return pd.DataFrame(columns=OUT_COLUMNS), unmatched
    out = pd.concat(frames, ignore_index=True)
    for col in ("ours", "ours_low", "ours_high", "paper"):
        out[col] = pd.to_numeric(out[col]).astype(float)
    out["difference"] = out["ours"] - out["paper"]
    has = (out["ours"].notna() & out["ours_low"].notna() & out["ours_high"].notna()
           & out["paper"].notna())
    out["paper_in_interval"] = pd.Series(
        [bool(lo <= p <= hi) if h else None for lo, p, hi, h in
         zip(out["ours_low"], out["paper"], out["ours_high"], has)], dtype=object)
    for col in ("ours_note", "paper_note", "source"):
        out[col] = out[col].map(_text)
    return out[OUT_COLUMNS], unmatched


def _cell_label(table: int, cell: str) -> tuple[str, str]:
    if table == 3:
        quantity, _, ckpt = cell.partition("/")
        return ("yes" if ckpt == "ckpt" else "no",
                f"{quantity} ({TABLE3_QUANTITIES.get(quantity, ('', '?'))[1]})")
    role, _, bench = cell.partition("/")
    mixture = {"flan": "Flan v2", "single": "GPT4-Alpaca", "mix": "Tülu v2"}.get(role, role)
    if bench not in BENCHMARK_LABELS:
        mixture = MIXTURE_LABELS.get(role, role)  # not one of the paper's columns
    return mixture, BENCH_LABELS.get(bench, bench)


def _fmt(v, spec: str = ".1f") -> str:
    return "" if v is None or pd.isna(v) else format(v, spec)


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def to_markdown(table: int, result: pd.DataFrame, unmatched: dict[str, str], ours_name: str,
                context: list[str] = ()) -> str:
    intervals = bool(result["ours_low"].notna().any() or result["ours_high"].notna().any())
    heads = (["act. ckpt", "quantity"] if table == 3 else ["mixture", "benchmark"])
    lines = [f"# Table {table}: ours against the paper", "",
             f"Ours: `{ours_name}`. Paper: Table {table} of {PAPER}, shipped as "
             f"`analysis/paper_reference/table{table}.csv` with the row and column of every value. "
             "difference = ours - paper"
             + (" (GB for memory, seconds per step for time; the paper measured on one A100)."
                if table == 3 else " (score points)."),
             "", ("\"paper in ours\": whether the paper's value lies inside our interval "
                  "[low, high]." if intervals else
                  "Our table carries no intervals, so no cell says whether the paper's value "
                  "lies inside one."), ""]
    lines += [*context, ""] if context else []
    lines += list(unmatched.values()) + ([""] if unmatched else [])
    if result.empty:
        if not unmatched:
            lines.append("Our table has no rows to compare.")
        return "\n".join(lines).rstrip() + "\n"
    for model, group in result.groupby("model", sort=False):
        both = group.dropna(subset=["ours", "paper"])
        within = group["paper_in_interval"].dropna()
        summary = f"{len(both)} cells with both values"
        if len(both):
            summary += (f"; mean difference {both['difference'].mean():+.2f}, "
                        f"mean |difference| {both['difference'].abs().mean():.2f}")
        if intervals:
            summary += f"; paper inside our interval in {int(within.sum())} of {len(within)}"
        lines += [f"## {model} against the paper's {group['paper_model'].iloc[0]}", "",
                  summary + ".", ""]
        head = (["method", *heads, "ours"] + (["our interval"] if intervals else [])
                + ["paper", "difference"] + (["paper in ours"] if intervals else [])
                + ["why empty / notes"])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in group.itertuples():
            notes = "; ".join(f"{side}: {_md(n)}" for side, n in
                              (("ours", r.ours_note), ("paper", r.paper_note)) if n)
            cells = [_md(r.method or r.method_id), *_cell_label(table, r.cell), _fmt(r.ours)]
            if intervals:
                cells.append("" if pd.isna(r.ours_low) or pd.isna(r.ours_high)
                             else f"[{r.ours_low:.1f}, {r.ours_high:.1f}]")
            cells += [_fmt(r.paper), _fmt(r.difference, "+.1f")]
            if intervals:
                cells.append("" if r.paper_in_interval is None
                             else ("yes" if r.paper_in_interval else "**no**"))
            lines.append("| " + " | ".join(cells + [notes]) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _settings(table: int, ours: pd.DataFrame) -> list[str]:
    """Table 3: our measurement settings, which the paper's need not share."""
    cols = ["batch_size", "seq_len", "steps"]
    if table != 3 or not set(cols) <= set(ours.columns):
        return []
    found = ours[cols].drop_duplicates().dropna()
    shown = ", ".join(f"batch {int(b)} x {int(s)} tokens, {int(n)} measured steps"
                      for b, s, n in found.itertuples(index=False))
    return [f"Our measurements: {shown}. The paper's: 30 steps of Flan v2 training on one A100 "
            "at LoRA rank 64 or the equivalent SFT density (Appendix C)."] if shown else []


def write_comparison(table: int, ours_csv: Path, models: dict, md_path: Path,
                     csv_path: Path | None = None) -> pd.DataFrame:
    """Write `md_path` and its CSV (default: same stem); returns the compared cells. The CSV
    holds one row per cell, plus one row per model without a published counterpart."""
    ours_csv, md_path = Path(ours_csv), Path(md_path)
    csv_path = Path(csv_path) if csv_path else md_path.with_suffix(".csv")
    ours = pd.read_csv(ours_csv)
    result, unmatched = compare(table, ours, models)
    extra = pd.DataFrame([{"model": model, "paper_note": line}
                          for model, line in unmatched.items()],
                         columns=OUT_COLUMNS)
    rows = pd.concat([df for df in (result, extra) if not df.empty] or [result], ignore_index=True)
    write_text(csv_path, rows.round(6).to_csv(index=False))
    write_text(md_path, to_markdown(table, result, unmatched, ours_csv.as_posix(),
                                       _settings(table, ours)))
    return result


def models_from_configs(paths: list[Path]) -> dict:
    """The `models` sections of config files, later files overriding (as Snakemake merges)."""
    import yaml

    models: dict = {}
    for path in paths:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
        for name, entry in (cfg.get("models") or {}).items():
            models[name] = {**models.get(name, {}), **(entry or {})}
    return models


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="One of our tables against the paper's")
    p.add_argument("--table", type=int, choices=(1, 2, 3), required=True)
    p.add_argument("--ours", type=Path, required=True, help="our table CSV (results/tableN.csv)")
    p.add_argument("--config", "--models-config", dest="configs", type=Path, action="append",
                   required=True, help="config YAML with a models section (repeatable)")
    p.add_argument("--out", type=Path, help="Markdown path (default: tableN_vs_paper.md beside "
                   "--ours); the CSV goes beside it")
    a = p.parse_args(argv)
    out = a.out or a.ours.with_name(f"table{a.table}_vs_paper.md")
    write_comparison(a.table, a.ours, models_from_configs(a.configs), out)
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
