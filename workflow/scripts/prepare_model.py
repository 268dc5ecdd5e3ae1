"""Snakemake adapter: prepare one model (finetune.models.prepare_model)."""
from pathlib import Path

from finetune.models import prepare_model
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
prepare_model(sm.wildcards.model, sm.params.entry, Path(sm.config["cache_dir"]))
