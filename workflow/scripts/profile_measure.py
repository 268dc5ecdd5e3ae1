"""Snakemake adapter: one Table 3 row, measured in fresh processes (finetune.profiling.runner)."""
from study.hub import hub_offline

hub_offline()  # before transformers is imported: downloads happened in download_model

from pathlib import Path

from finetune.profiling.runner import profile
from finetune.profiling.spec import MeasureSpec, spec_defaults
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
cfg = sm.params.profile
settings = {k: cfg[k] for k in spec_defaults() if k in cfg and k not in ("model_size", "threads")}
spec = MeasureSpec(sm.params.model, sm.wildcards.method, **{**settings,
                   "activation_checkpointing": sm.params.checkpointing,
                   "model_size": sm.params.model_size, "threads": sm.threads})
# A failed measurement is recorded (status "failed" + error) and shows as a note in Table 3.
profile(spec, Path(sm.output[0]), granularity_gib=float(cfg["memory_granularity_gib"]),
        oom_retries=int(cfg["oom_retries"]), timeout_s=float(cfg["timeout_s"]),
        model_name=sm.wildcards.model)
