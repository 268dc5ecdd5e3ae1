"""Snakemake adapter: prepare one model (finetune.models.prepare_model)."""
from pathlib import Path

from _log import to_rule_log
from finetune.models import prepare_model

to_rule_log(snakemake)  # noqa: F821
out = Path(snakemake.output[0]).parent  # noqa: F821
prepare_model(out.name, snakemake.params.entry, out.parent.parent)  # noqa: F821
