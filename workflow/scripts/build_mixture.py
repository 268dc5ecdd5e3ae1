"""Snakemake adapter: build one instruction mixture (finetune.mixtures.build_mixture)."""
from pathlib import Path

from _log import to_rule_log
from finetune.mixtures import build_mixture

to_rule_log(snakemake)  # noqa: F821
out = Path(snakemake.output[0])  # noqa: F821
build_mixture(out.stem, snakemake.params.spec, Path(snakemake.config["cache_dir"]), out)  # noqa: F821
