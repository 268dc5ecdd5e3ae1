"""Snakemake adapter: build one instruction mixture (finetune.mixtures.build_mixture)."""
from pathlib import Path

from finetune.mixtures import build_mixture
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
role = sm.wildcards.mixture
build_mixture(sm.config["study"]["mixtures"][role], sm.params.spec, Path(sm.config["cache_dir"]),
              Path(sm.output[0]), catalogue=sm.params.catalogue)
