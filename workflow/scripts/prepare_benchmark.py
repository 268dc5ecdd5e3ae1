"""Snakemake adapter: fetch and normalise one benchmark's items (evals.prepare_benchmark)."""
from pathlib import Path

from evals import prepare_benchmark
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
select_cfg = sm.params.select_cfg if "select_cfg" in sm.params.keys() else None
prepare_benchmark(sm.wildcards.bench, sm.params.cfg, Path(sm.config["cache_dir"]), Path(sm.output.data),
                  select_cfg)
