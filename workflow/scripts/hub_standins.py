"""Snakemake adapter: write the rehearsal's stand-in hub mirror (rehearsal.build_all)."""
from pathlib import Path

from rehearsal import build_all
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
print(build_all(Path(sm.output[0]).parent))
