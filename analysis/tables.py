"""Tables 1 and 2: methods x model sizes, columns grouped by training mixture.

Every cell comes from an evaluation file. A cell without a real measurement is empty, and the
row's `notes` column says why (not run in this config, no data, failed, ...).
"""
from __future__ import annotations

import os
from pathlib import Path
from statistics import mean

import pandas as pd

from analysis.results import Cell, read_cell, result_key

BENCH_LABELS = {"mmlu": "MMLU", "gsm": "GSM", "bbh": "BBH", "tydiqa": "TyDiQA",
                "humaneval": "HumanEval", "heldout_loss": "held-out loss"}
DECIMALS = {"heldout_loss": 2}  # shown digits where not 1 (scores are percentages)
MIXTURE_LABELS = {"flan": "Flan-style", "single": "single-source", "mix": "mixture"}
METHOD_LABELS = {"original": "Original", "full": "FullFT", "ia3": "(IA)3", "lora": "LoRA",
                 "sft-ag": "SFT-AG", "sft-ma": "SFT-MA", "sift": "SIFT",
                 "original-4bit": "Original (4-bit)", "qlora": "qLoRA", "qsft-ag": "qSFT-AG",
                 "qsft-ma": "qSFT-MA"}

TABLE1_METHODS = ["original", "full", "ia3", "lora", "sft-ag", "sft-ma", "sift"]
TABLE1_COLUMNS = [("flan", "mmlu"), ("flan", "tydiqa"), ("single", "humaneval"),
                  ("mix", "mmlu"), ("mix", "gsm"), ("mix", "bbh"), ("mix", "tydiqa"),
                  ("mix", "humaneval")]
# Not in the paper: a config may add held-out instruction loss per mixture (lower is better).
HELDOUT_COLUMNS = [("flan", "heldout_loss"), ("single", "heldout_loss"), ("mix", "heldout_loss")]
TABLE2_METHODS = ["original-4bit", "qlora", "qsft-ag", "qsft-ma"]
TABLE2_COLUMNS = [("flan", "mmlu"), ("flan", "tydiqa"), ("single", "humaneval")]

UNTUNED = ("original", "original-4bit")


def column_name(role: str, bench: str) -> str:
    return f"{role}/{bench}"


def eval_index(evals_root: Path, model: str, role: str, method: str, seed: int) -> Path:
    """Where the DAG writes the evaluation index of one run (see workflow/rules/common.smk)."""
    mixture = "none" if method in UNTUNED else role
    return evals_root / model / mixture / method / "default" / f"seed{seed}" / "index.json"


def _mean_cell(cells: list[Cell]) -> Cell:
    values = [c.value for c in cells if c.value is not None]
    if not values:
        return cells[0]
    reason = "" if len(values) == len(cells) else f"{len(values)} of {len(cells)} seeds"
    return Cell(mean(values), reason)


def build_table(evals_root: Path, models: list[str], methods: list[str],
                columns: list[tuple[str, str]], planned: dict, seeds: list[int]) -> pd.DataFrame:
    """One row per (model, method); `planned` maps a method to the columns this config runs.

    A benchmark with no data in this config (TyDiQA offline) is still "evaluated": its result
    file carries the reason, which lands in `notes`. Extra methods that the config runs but the paper's layout lacks get rows too.
    """
    rows = []
    for model in models:
        for method in methods + [m for m in planned if m not in methods]:
            row = {"model": model, "method": METHOD_LABELS.get(method, method)}
            reasons: dict[str, list[str]] = {}
            for role, bench in columns:
                if (role, bench) not in planned.get(method, []):
                    cell = Cell(None, "not run in this config")
                else:
                    cell = _mean_cell([read_cell(eval_index(evals_root, model, role, method, s),
                                                 result_key(role, bench)) for s in seeds])
                row[column_name(role, bench)] = (None if cell.value is None
                                                 else round(cell.value, 2))
                if cell.reason:
                    reasons.setdefault(cell.reason, []).append(column_name(role, bench))
            row["notes"] = "; ".join(
                f"{reason} ({'all' if len(cols) == len(columns) else ', '.join(cols)})"
                for reason, cols in reasons.items())
            rows.append(row)
    return pd.DataFrame(rows, columns=["model", "method"]
                        + [column_name(*c) for c in columns] + ["notes"])


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    _atomic_write(csv_path, table.to_csv(index=False))
    md = _display_columns(_formatted(table, ""))
    _atomic_write(csv_path.with_suffix(".md"), md.to_markdown(index=False, disable_numparse=True))
    tex = _display_columns(_formatted(table.drop(columns=["notes"]), "--"))
    _atomic_write(csv_path.with_suffix(".tex"), tex.to_latex(index=False))
