"""Tables 1 and 2: methods x model sizes, columns grouped by training mixture.

Every cell comes from an evaluation file. A cell without a real measurement is empty, and the
row's `notes` column says why (not run in this config, no data, failed, ...).

Every measured cell carries a 95% interval (analysis.intervals) in the columns `<col>_low` and
`<col>_high`. With several seeds the value is the mean of the seeds' scores and the interval is
over items (one bootstrap draw of the items shared by every seed, which were scored on the same
items), so it is the uncertainty of that mean from the benchmark's finite size; the spread over
seeds (training randomness) is the separate column `<col>_seed_sd` (sample sd of the seeds'
scores; only where the config has several seeds).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Callable

import pandas as pd

from analysis.intervals import ItemMismatch, interval
from analysis.results import BPB_SUFFIX, Cell, is_loss, read_cell, result_key, scale_of
from artifacts.atomic import write_text

# The paper's benchmarks, labelled. analysis imports no evals: evals.data.BENCHMARKS owns the
# names, and tests/structure/test_one_owner.py keeps these keys equal to it.
BENCHMARK_LABELS = {"mmlu": "MMLU", "gsm": "GSM", "bbh": "BBH", "tydiqa": "TyDiQA", "humaneval": "HumanEval"}
BENCH_LABELS = {**BENCHMARK_LABELS, "heldout_loss": "held-out loss"}
# The mixture roles, labelled (study.plan.ROLES owns the names; the same test keeps them equal).
MIXTURE_LABELS = {"flan": "Flan-style", "single": "single-source", "mix": "mixture"}
# The paper's column layout; rows are the config's methods, labelled by their method files.
TABLE1_COLUMNS = [("flan", "mmlu"), ("flan", "tydiqa"), ("single", "humaneval"),
                  ("mix", "mmlu"), ("mix", "gsm"), ("mix", "bbh"), ("mix", "tydiqa"),
                  ("mix", "humaneval")]
# Not in the paper: a config may add held-out instruction loss per mixture (lower is better).
HELDOUT_COLUMNS = [(role, "heldout_loss") for role in MIXTURE_LABELS]
# Nor these: answer likelihoods, bits per byte of each benchmark's reference answers (lower is
# better), where the config asks for them.
BPB_COLUMNS = [(role, f"{bench}_bpb") for role in MIXTURE_LABELS for bench in BENCHMARK_LABELS]
TABLE2_COLUMNS = [("flan", "mmlu"), ("flan", "tydiqa"), ("single", "humaneval")]
COLUMNS = {"table1": TABLE1_COLUMNS, "table2": TABLE2_COLUMNS}
# The CSV's columns beside each value column "<role>/<bench>" (analysis.paper_comparison skips them).
LOW, HIGH, SEED_SD = "_low", "_high", "_seed_sd"
DERIVED_SUFFIXES = (LOW, HIGH, SEED_SD)
# Cells read per (model, method, column name): one Cell per seed.
Cells = dict[tuple[str, str, str], list[Cell]]


def column_name(role: str, bench: str) -> str:
    return f"{role}/{bench}"


def bench_label(bench: str) -> str:
    if bench.endswith(BPB_SUFFIX):
        base = bench[:-len(BPB_SUFFIX)]
        return f"{BENCH_LABELS.get(base, base)} bits/byte"
    return BENCH_LABELS.get(bench, bench)


def digits(bench: str) -> int:
    """Shown decimals: scores are percentages (1), losses are nats/token or bits/byte (2)."""
    return 2 if is_loss(bench) else 1


@dataclass(frozen=True)
class Summary:
    """A table cell over seeds: the mean value, its 95% interval, the seeds' sd, and reasons
    (why it is empty, or what it lacks)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    seed_sd: float | None = None
    reasons: list[str] = field(default_factory=list)


def summarize(cells: list[Cell], scale: float) -> Summary:
    """Mean over the seeds with a value; interval over items of that mean (`scale`: table units
    per unit of the per-item values)."""
    measured = [c for c in cells if c.value is not None]
    if not measured:
        return Summary(None, reasons=[cells[0].reason])
    reasons = [] if len(measured) == len(cells) else [f"{len(measured)} of {len(cells)} seeds"]
    values = [c.value for c in measured]
    sd = stdev(values) if len(values) > 1 else None
    if any(c.items is None for c in measured):
        return Summary(mean(values), seed_sd=sd, reasons=reasons + ["no per-item samples: no interval"])
    try:
        low, high, _ = interval([c.items for c in measured])
    except ItemMismatch as e:
        return Summary(mean(values), seed_sd=sd,
                       reasons=reasons + [f"seeds scored on different items, no interval: {e}"])
    return Summary(mean(values), scale * low, scale * high, sd, reasons)


def read_cells(index_of: Callable[[str, str, str, int], Path | str], models: list[str],
               methods: list[str], columns: list[tuple[str, str]], planned: dict,
               seeds: list[int]) -> Cells:
    """Every cell of a table, read once: `planned` maps a method to the columns this config runs,
    `index_of(model, role, method, seed)` names a run's evaluation index, or gives the reason
    the cell is empty.

    A benchmark with no data in this config (TyDiQA offline) is still "evaluated": its result
    file carries the reason, which lands in `notes`.
    """
    cells: Cells = {}
    for model in models:
        for method in methods:
            for role, bench in columns:
                if (role, bench) not in planned.get(method, []):
                    seed_cells = [Cell(None, "not run in this config")]
                else:
                    sources = [index_of(model, role, method, s) for s in seeds]
                    seed_cells = [Cell(None, src) if isinstance(src, str)
                                  else read_cell(src, result_key(role, bench)) for src in sources]
                cells[model, method, column_name(role, bench)] = seed_cells
    return cells


def table_columns(table: str, planned: dict) -> list[tuple[str, str]]:
    """The paper's columns of `table`, plus the held-out loss and answer-likelihood columns the
    config asks for."""
    asked = {p for pairs in planned.values() for p in pairs}
    return COLUMNS[table] + [c for c in HELDOUT_COLUMNS + BPB_COLUMNS if c in asked]


def build_table(cells: Cells, models: list[str], labels: dict[str, str],
                columns: list[tuple[str, str]]) -> pd.DataFrame:
    """One row per (model, method), methods in the order of `labels` (method -> row label):
    each column's value, its interval and, with several seeds, their sd; `notes` says why a
    cell is empty or lacks part of that."""
    several_seeds = max((len(seed_cells) for seed_cells in cells.values()), default=1) > 1
    names = []
    for role, bench in columns:
        col = column_name(role, bench)
        names += [col, col + LOW, col + HIGH] + ([col + SEED_SD] if several_seeds else [])
    rows = []
    for model in models:
        for method, label in labels.items():
            row = {"model": model, "method": label, "method_id": method}
            reasons: dict[str, list[str]] = {}
            for role, bench in columns:
                col = column_name(role, bench)
                cell = summarize(cells[model, method, col], scale_of(result_key(role, bench)))
                for suffix, v in [("", cell.value), (LOW, cell.low), (HIGH, cell.high),
                                  (SEED_SD, cell.seed_sd)]:
                    row[col + suffix] = None if v is None else round(v, 4)
                for reason in cell.reasons:
                    reasons.setdefault(reason, []).append(col)
            row["notes"] = "; ".join(
                f"{reason} ({'all' if len(cols) == len(columns) else ', '.join(cols)})"
                for reason, cols in reasons.items())
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "method", "method_id"] + names + ["notes"])


def display_label(col: str) -> str:
    """A value column's name for people: "mix/gsm" -> "mixture GSM"."""
    role, _, bench = col.partition("/")
    return f"{MIXTURE_LABELS.get(role, role)} {bench_label(bench)}" if bench else col


def _cell_text(row, col: str, style: str) -> str:
    """Markdown: "value [low, high]" (+ " (seed sd x)"); LaTeX: "value $\\pm$ half-width" (the
    interval's half width; percentile intervals may be slightly asymmetric). Empty: "" / "--"."""
    value, low, high = row[col], row.get(col + LOW), row.get(col + HIGH)
    if pd.isna(value):
        return "--" if style == "tex" else ""
    d = digits(col.partition("/")[2])
    text = f"{value:.{d}f}"
    if not (pd.isna(low) or pd.isna(high)):
        text += (f" $\\pm$ {(high - low) / 2:.{d}f}" if style == "tex"
                 else f" [{low:.{d}f}, {high:.{d}f}]")
    sd = row.get(col + SEED_SD)
    if style == "md" and sd is not None and not pd.isna(sd):
        text += f" (seed sd {sd:.{d}f})"
    return text


def _shown(table: pd.DataFrame, style: str) -> pd.DataFrame:
    """The table for people: one text cell per value column, columns labelled; no method id.
    Markdown also shows the setting each row trained with and the notes; LaTeX, the paper's
    layout, does not."""
    value_cols = [c for c in table.columns if "/" in c and not c.endswith(DERIVED_SUFFIXES)]
    heading = ["model", "method"] + (["setting"] if style == "md" and "setting" in table else [])
    out = table[heading].astype(object).copy()
    for col in value_cols:
        out[display_label(col)] = [_cell_text(row, col, style) for _, row in table.iterrows()]
    if style == "md":
        out["notes"] = table["notes"]
    return out


def write_table(table: pd.DataFrame, csv_path: Path) -> None:
    """CSV for machines, Markdown and LaTeX (same stem) for people and papers."""
    csv_path = Path(csv_path)
    write_text(csv_path, table.to_csv(index=False))
    write_text(csv_path.with_suffix(".md"),
               _shown(table, "md").to_markdown(index=False, disable_numparse=True))
    write_text(csv_path.with_suffix(".tex"), _shown(table, "tex").to_latex(index=False))
