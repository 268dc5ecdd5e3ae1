"""Snakemake adapter: write a method table (analysis.tables) from evaluation files."""
from pathlib import Path

from _log import to_rule_log
from analysis import tables

sm = snakemake  # noqa: F821
to_rule_log(sm)
name = sm.wildcards.table
layout = {"table1": (tables.TABLE1_METHODS, tables.TABLE1_COLUMNS),
          "table2": (tables.TABLE2_METHODS, tables.TABLE2_COLUMNS)}[name]
table = tables.build_table(
    Path(sm.config["results_dir"]) / "evals", sm.config["study"]["models"], *layout,
    planned={m: [tuple(p) for p in pairs] for m, pairs in sm.params.planned.items()},
    seeds=sm.config["study"]["seeds"])
tables.write_table(table, Path(sm.output.csv))
