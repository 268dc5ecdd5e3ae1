"""Collect finished runs into the tables and figures: read the result files the layout names,
label methods from their files, and hand plain data to analysis."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import figures, reference_comparison, tables
from analysis.results import read_cell, result_key
from artifacts.atomic import write_text
from artifacts.layout import Layout, Run
from baselines.config import method_facts
from study.plan import Plan


# Each table's reference method, which the companion table compares every method against
# (`study.<table>.compare_to` overrides it).
REFERENCE_METHODS = {"table1": "lora", "table2": "qlora"}


def method_table(plan: Plan, table: str, csv_path: Path, versus_csv: Path) -> pd.DataFrame:
    """Table 1 or 2 (CSV, Markdown, LaTeX) from the evaluation indexes of the planned runs, and
    its companion (`versus_csv` and Markdown): each method against the table's reference."""
    planned = plan.planned_runs(table)
    labels = {m: method_facts(m)["label"] for m in planned}
    models, columns = plan.study["models"], tables.table_columns(table, planned)

    cells = tables.read_cells(plan.table_cell_source, models, list(labels), columns, planned,
                              plan.study["seeds"])
    built = tables.build_table(cells, models, labels, columns)
    tables.write_table(built, Path(csv_path))
    reference = plan.study[table].get("compare_to", REFERENCE_METHODS[table])
    versus = reference_comparison.compare_to_reference(cells, models, labels, columns, reference)
    reference_comparison.write_reference_comparison(
        versus, Path(versus_csv), f"Table {table.removeprefix('table')}",
        labels.get(reference, reference))
    return built


def grid_frame(layout: Layout, index_paths: list[Path], score: str) -> pd.DataFrame:
    """One row per grid point: the hyperparameters it trained with (its method.json) and its dev
    score (or the reason it has none)."""
    rows = []
    for index in map(Path, index_paths):
        run = Run.from_dir(index)
        method_file = layout.method_file(run)
        resolved = json.loads(method_file.read_text()) if method_file.exists() else {}
        cell = read_cell(index, result_key(run.mixture, score))
        rows.append({"model": run.model, "method": run.method, "lr": resolved.get("lr"),
                     "r": resolved.get("r"), "weight_decay": resolved.get("weight_decay", 0.0),
                     "score": cell.value, "note": cell.reason})
    return pd.DataFrame(rows)


def grid_outputs(layout: Layout, index_paths: list[Path], score: str, table_csv: Path,
                 figure_png: Path) -> None:
    """Table 4 (the best setting per model and method) and Figure 4 (every grid point)."""
    grid = grid_frame(layout, index_paths, score)
    labels = {m: method_facts(m)["label"] for m in grid["method"].unique()}
    best = figures.best_settings(grid, lower_is_better=score == "heldout_loss", labels=labels)
    write_text(table_csv, best.to_csv(index=False))
    figures.figure4(grid, score, Path(figure_png), labels)


def figure3_from_runs(summary_paths: list[Path], png: Path) -> None:
    """Figure 3: the parameter ages of every SpIEL run, from its saved delta's `grown_at`."""
    runs = {}
    for summary_path in map(Path, summary_paths):
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "ok":
            print(f"skipping failed run {summary_path.parent}: {summary.get('error')}")
            continue
        run = Run.from_dir(summary_path)
        grown_at = figures.grown_at_of(summary_path.parent / "artifact" / "sft_model.safetensors")
        label = f"{method_facts(run.method)['label']}, {run.model}, {run.mixture}"
        runs[label] = (grown_at, int(grown_at.max()))
    figures.figure3(runs, Path(png))
