"""Snakemake adapter: Figure 4 from the grid runs (study.collect)."""
from artifacts.layout import Layout
from study.collect import figure4_from_grid
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
figure4_from_grid(Layout(sm.config["results_dir"]), list(sm.input.points), sm.params.score, sm.output[0])
