"""Snakemake adapter: one of our tables beside the paper's published one (analysis.paper_comparison)."""
from analysis.paper_comparison import write_comparison
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
write_comparison(int(sm.wildcards.table[-1]), sm.input[0], sm.params.models, sm.output.md,
                 sm.output.csv)
