"""Snakemake adapter: build one instruction mixture (finetune.mixtures.build_mixture)."""
from pathlib import Path

from _log import to_rule_log
from finetune.mixtures import build_mixture

sm = snakemake  # noqa: F821
to_rule_log(sm)
role = Path(sm.output[0]).stem
build_mixture(sm.config["study"]["mixtures"][role], sm.params.spec, Path(sm.config["cache_dir"]),
              Path(sm.output[0]), catalogue=sm.params.catalogue)
