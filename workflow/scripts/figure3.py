"""Snakemake adapter: Figure 3 from the SpIEL runs' saved deltas (study.collect)."""
from study.collect import figure3_from_runs
from study.rule_log import to_rule_log

to_rule_log(snakemake.log[0])  # noqa: F821
figure3_from_runs(list(snakemake.input.runs), snakemake.output[0])  # noqa: F821
