"""Snakemake adapter: fetch and normalise one benchmark (evals.prepare_benchmark)."""
from pathlib import Path

from _log import to_rule_log
from evals import prepare_benchmark

to_rule_log(snakemake)  # noqa: F821
out = Path(snakemake.output.data)  # noqa: F821
prepare_benchmark(out.stem, snakemake.params.cfg, Path(snakemake.config["cache_dir"]), out)  # noqa: F821
