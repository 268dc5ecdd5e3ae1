"""Snakemake adapter: Table 3, its Markdown and figure from the measurement records."""
from study.rule_log import to_rule_log
from study.table3 import table3_from_records

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
table3_from_records(list(sm.input.records), sm.output.csv, sm.output.md, sm.output.png,
                    sm.params.model_configs)
