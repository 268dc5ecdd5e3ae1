"""Snakemake adapter: Table 3, its markdown and figure from the measurement records."""
from _log import to_rule_log
from analysis.table3 import read_records, write_table3

sm = snakemake  # noqa: F821
to_rule_log(sm)
write_table3(read_records(list(sm.input)), sm.output.csv, sm.output.md, sm.output.png)
