"""Snakemake adapter: Table 1 or 2 from the planned runs' evaluations, and its comparison with
the table's reference method (study.collect)."""
from study.collect import method_table
from study.plan import Plan
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
method_table(Plan(sm.config), sm.wildcards.table, sm.output.csv, sm.output.versus_csv)
