"""Snakemake adapter: one training run through the shared loop (finetune.train.train)."""
from pathlib import Path

from _log import record_failures, to_rule_log
from baselines import resolve_method
from finetune.train import train

sm = snakemake  # noqa: F821
to_rule_log(sm)
out = Path(sm.output[0])
method = resolve_method(sm.wildcards.method, sm.params.overrides, sm.params.model_size)
record_failures(out, lambda: train(sm.params.model, Path(sm.input.data), method,
                                   sm.params.train_cfg, out.parent, int(sm.wildcards.seed)))
