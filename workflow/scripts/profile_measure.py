"""Snakemake adapter: one Table 3 row, measured in fresh processes (finetune.profiling.runner)."""
from pathlib import Path

from _log import to_rule_log
from finetune.profiling.measure import MeasureSpec
from finetune.profiling.runner import profile

sm = snakemake  # noqa: F821
to_rule_log(sm)
cfg = sm.params.profile
spec = MeasureSpec(sm.params.model, sm.wildcards.method, rank=int(cfg["rank"]),
                   batch_size=int(cfg["batch_size"]), seq_len=int(cfg["seq_len"]),
                   steps=int(cfg["steps"]), warmup_steps=int(cfg["warmup_steps"]),
                   activation_checkpointing=sm.params.checkpointing,
                   model_size=sm.params.model_size, threads=sm.threads)
# A failed measurement is recorded (status "failed" + error) and shows as a note in Table 3.
profile(spec, Path(sm.output[0]), granularity_gib=float(cfg["memory_granularity_gib"]),
        oom_retries=int(cfg["oom_retries"]), timeout_s=float(cfg["timeout_s"]),
        model_name=sm.wildcards.model)
