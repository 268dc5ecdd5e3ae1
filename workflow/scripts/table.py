"""Snakemake adapter: write a method table (analysis.tables) from evaluation files."""
from pathlib import Path

from _log import to_rule_log
from analysis import tables

sm = snakemake  # noqa: F821
to_rule_log(sm)
name = sm.wildcards.table
methods, columns = {"table1": (tables.TABLE1_METHODS, tables.TABLE1_COLUMNS),
                    "table2": (tables.TABLE2_METHODS, tables.TABLE2_COLUMNS)}[name]
planned = {m: [tuple(p) for p in pairs] for m, pairs in sm.params.planned.items()}
# Held-out loss columns appear only where the config asks for them.
asked = {p for pairs in planned.values() for p in pairs}
columns = columns + [c for c in tables.HELDOUT_COLUMNS if c in asked]
table = tables.build_table(
    Path(sm.config["results_dir"]) / "evals", sm.config["study"]["models"], methods, columns,
    planned=planned,
    seeds=sm.config["study"]["seeds"])
tables.write_table(table, Path(sm.output.csv))
