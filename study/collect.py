"""Collect finished runs into the tables and figures: read the result files the layout names,
label methods from their files, and hand plain data to analysis."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import figures, reference_comparison, tables
from analysis.results import better_direction, read_cell, result_key
from artifacts.atomic import write_text
from artifacts.layout import Layout, Run, RunFolder
from baselines.checks import SETTING_SOURCE
from baselines.config import method_facts
from study.plan import Plan, parse_hp

# Table 4's columns of every grid point's setting, whether or not its search varied them.
GRID_SHOWN = ("lr", "r", "weight_decay")


# Each table's reference method, which the companion table compares every method against
# (`study.<table>.compare_to` overrides it).
REFERENCE_METHODS = {"table1": "lora", "table2": "qlora"}


def method_table(plan: Plan, table: str, csv_path: Path, versus_csv: Path) -> pd.DataFrame:
    """Table 1 or 2 (CSV, Markdown, LaTeX) from the evaluation indexes of the planned runs, and
    its companion (`versus_csv` and Markdown): each method against the table's reference. Each
    row says the setting it trained with (run_setting)."""
    planned = plan.planned_runs(table)
    labels = {m: method_facts(m)["label"] for m in planned}
    models, columns = plan.study["models"], tables.table_columns(table, planned)

    cells = tables.read_cells(plan.table_cell_source, models, list(labels), columns, planned,
                              plan.study["seeds"])
    built = tables.build_table(cells, models, labels, columns)
    built.insert(built.columns.get_loc("method_id") + 1, "setting",
                 [run_setting(plan, model, method, planned[method])
                  for model, method in zip(built["model"], built["method_id"])])
    tables.write_table(built, Path(csv_path))
    reference = plan.study[table].get("compare_to", REFERENCE_METHODS[table])
    versus = reference_comparison.compare_to_reference(cells, models, labels, columns, reference)
    reference_comparison.write_reference_comparison(
        versus, Path(versus_csv), f"Table {table.removeprefix('table')}",
        labels.get(reference, reference))
    return built


def run_setting(plan: Plan, model: str, method: str, pairs: list[tuple[str, str]]) -> str:
    """The setting a table row trained with, from its runs' method.json (`setting_source`):
    one text where every mixture's run agrees, else each mixture's; empty where no run has
    resolved its method (the row's notes say why)."""
    found = {}
    for role in dict.fromkeys(role for role, _ in pairs):
        for seed in plan.study["seeds"]:
            path = plan.layout.method_file(plan.table_run(model, role, method, seed))
            if plan.run_kind(model, method, role)[0] != "not_run" and path.exists():
                found[role] = json.loads(path.read_text()).get(SETTING_SOURCE, {}).get("summary", "")
                break
    if len(set(found.values())) <= 1:
        return next(iter(found.values()), "")
    return "; ".join(f"{role}: {summary}" for role, summary in found.items())


def grid_frame(layout: Layout, index_paths: list[Path], score: str) -> pd.DataFrame:
    """One row per grid point: its tag (`hp`), which hyperparameters its search varied
    (`searched`), the learning rate, budget and weight decay it trained with (its method.json;
    any other searched hyperparameter too) and its dev score (or the reason it has none)."""
    rows = []
    for index in map(Path, index_paths):
        run = Run.from_dir(index)
        method_file = layout.method_file(run)
        resolved = json.loads(method_file.read_text()) if method_file.exists() else {}
        point = parse_hp(run.hp)
        cell = read_cell(index, result_key(run.mixture, score))
        rows.append({"model": run.model, "method": run.method, "hp": run.hp, "searched": ",".join(point),
                     **{k: resolved.get(k) for k in GRID_SHOWN}, **point,
                     "score": cell.value, "note": cell.reason})
    columns = ["model", "method", "hp", "searched", *GRID_SHOWN, "score", "note"]
    # object columns: a budget stays 16 (not 16.0) beside a method without one
    frame = pd.DataFrame(rows, dtype=object) if rows else pd.DataFrame(columns=columns, dtype=object)
    return frame.astype({"score": float})


def grid_outputs(layout: Layout, index_paths: list[Path], score: str, table_csv: Path,
                 figure_png: Path) -> None:
    """Table 4 (the best setting per model and method) and Figure 4 (every grid point)."""
    grid = grid_frame(layout, index_paths, score)
    labels = {m: method_facts(m)["label"] for m in grid["method"].unique()}
    best = figures.best_settings(grid, lower_is_better=better_direction(score) == "lower", labels=labels)
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
        grown_at = figures.grown_at_of(RunFolder(summary_path.parent).artifact / "sft_model.safetensors")
        label = f"{method_facts(run.method)['label']}, {run.model}, {run.mixture}"
        runs[label] = (grown_at, int(grown_at.max()))
    figures.figure3(runs, Path(png))
