"""Tables 1 and 2: methods x model sizes, columns grouped by training mixture.

Every cell comes from an evaluation file. A cell without a real measurement is empty, and the
row's `notes` column says why (not run in this config, no data, failed, ...).
"""
from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Callable

import pandas as pd

from analysis.results import Cell, read_cell, result_key
from artifacts.atomic import write_text

BENCH_LABELS = {"mmlu": "MMLU", "gsm": "GSM", "bbh": "BBH", "tydiqa": "TyDiQA",
                "humaneval": "HumanEval", "heldout_loss": "held-out loss",
                "mmlu_bpb": "MMLU bpb", "gsm_bpb": "GSM bpb", "bbh_bpb": "BBH bpb",
                "tydiqa_bpb": "TyDiQA bpb", "humaneval_bpb": "HumanEval bpb"}
# shown digits where not 1 (scores are percentages; the CSV keeps 2, see build_table)
DECIMALS = {"heldout_loss": 2, "mmlu_bpb": 2, "gsm_bpb": 2, "bbh_bpb": 2, "tydiqa_bpb": 2,
            "humaneval_bpb": 2}
MIXTURE_LABELS = {"flan": "Flan-style", "single": "single-source", "mix": "mixture"}
# The paper's column layout; rows are the config's methods, labelled by their method files.
TABLE1_COLUMNS = [("flan", "mmlu"), ("flan", "tydiqa"), ("single", "humaneval"),
                  ("mix", "mmlu"), ("mix", "gsm"), ("mix", "bbh"), ("mix", "tydiqa"),
                  ("mix", "humaneval")]
# Not in the paper: a config may add held-out instruction loss per mixture (lower is better).
HELDOUT_COLUMNS = [("flan", "heldout_loss"), ("single", "heldout_loss"), ("mix", "heldout_loss")]
# Nor these: answer likelihoods, bits per byte of each benchmark's reference answers (lower is
# better), where the config asks for them.
BPB_COLUMNS = [(role, f"{bench}_bpb") for role in ("flan", "single", "mix")
               for bench in ("mmlu", "gsm", "bbh", "tydiqa", "humaneval")]
TABLE2_COLUMNS = [("flan", "mmlu"), ("flan", "tydiqa"), ("single", "humaneval")]
COLUMNS = {"table1": TABLE1_COLUMNS, "table2": TABLE2_COLUMNS}


def column_name(role: str, bench: str) -> str:
    return f"{role}/{bench}"


def _mean_cell(cells: list[Cell]) -> Cell:
    values = [c.value for c in cells if c.value is not None]
    if not values:
        return cells[0]
    reason = "" if len(values) == len(cells) else f"{len(values)} of {len(cells)} seeds"
    return Cell(mean(values), reason)


def table_columns(table: str, planned: dict) -> list[tuple[str, str]]:
    """The paper's columns of `table`, plus the held-out loss and answer-likelihood columns the
    config asks for."""
    asked = {p for pairs in planned.values() for p in pairs}
    return COLUMNS[table] + [c for c in HELDOUT_COLUMNS + BPB_COLUMNS if c in asked]


def build_table(index_of: Callable[[str, str, str, int], Path | str], models: list[str],
                labels: dict[str, str], columns: list[tuple[str, str]], planned: dict,
                seeds: list[int]) -> pd.DataFrame:
    """One row per (model, method), methods in the order of `labels` (method -> row label);
    `planned` maps a method to the columns this config runs, `index_of(model, role, method,
    seed)` names a run's evaluation index, or gives the reason the cell is empty.

    A benchmark with no data in this config (TyDiQA offline) is still "evaluated": its result
    file carries the reason, which lands in `notes`.
    """
    rows = []
    for model in models:
        for method, label in labels.items():
            row = {"model": model, "method": label, "method_id": method}
            reasons: dict[str, list[str]] = {}
            for role, bench in columns:
                if (role, bench) not in planned.get(method, []):
                    cell = Cell(None, "not run in this config")
                else:
                    sources = [index_of(model, role, method, s) for s in seeds]
                    cell = _mean_cell([Cell(None, src) if isinstance(src, str)
                                       else read_cell(src, result_key(role, bench)) for src in sources])
                row[column_name(role, bench)] = (None if cell.value is None
                                                 else round(cell.value, 2))
                if cell.reason:
                    reasons.setdefault(cell.reason, []).append(column_name(role, bench))
            row["notes"] = "; ".join(
                f"{reason} ({'all' if len(cols) == len(columns) else ', '.join(cols)})"
                for reason, cols in reasons.items())
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "method", "method_id"]
                        + [column_name(*c) for c in columns] + ["notes"])


def _display_columns(table: pd.DataFrame) -> pd.DataFrame:
    def label(col):
        role, _, bench = col.partition("/")
        return f"{MIXTURE_LABELS[role]} {BENCH_LABELS[bench]}" if bench else col
    return table.rename(columns=label)


def _formatted(table: pd.DataFrame, empty: str) -> pd.DataFrame:
    """Cells as text: scores (percent) with 1 decimal, losses (nats/token) with 2, where the
    methods differ; an empty cell is `empty` ("nan" would read like a measurement)."""
    out = table.astype(object)
    for col in table.columns:
        bench = col.partition("/")[2]
        if bench:
            digits = DECIMALS.get(bench, 1)
            out[col] = [empty if pd.isna(v) else f"{v:.{digits}f}" for v in table[col]]
    return out


def write_table(table: pd.DataFrame, csv_path: Path) -> None:
    """CSV for machines, Markdown and LaTeX (same stem) for people and papers."""
    write_text(csv_path, table.to_csv(index=False))
    shown = table.drop(columns=["method_id"])  # the label is the row's name for people
    md = _display_columns(_formatted(shown, ""))
    write_text(csv_path.with_suffix(".md"), md.to_markdown(index=False, disable_numparse=True))
    tex = _display_columns(_formatted(shown.drop(columns=["notes"]), "--"))
    write_text(csv_path.with_suffix(".tex"), tex.to_latex(index=False))
