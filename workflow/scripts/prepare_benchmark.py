"""Snakemake adapter: fetch and normalise one benchmark (evals.prepare_benchmark)."""
from pathlib import Path

from evals import prepare_benchmark
from study.rule_log import to_rule_log

to_rule_log(snakemake.log[0])  # noqa: F821
out = Path(snakemake.output.data)  # noqa: F821
prepare_benchmark(out.stem, snakemake.params.cfg, Path(snakemake.config["cache_dir"]), out)  # noqa: F821
