"""The training defaults and their resolution, torch-free so that the DAG can read them while
it parses (`study.plan` sizes a training job from them; `finetune.train` trains with them)."""
from __future__ import annotations

# The one owner of the training defaults (the config schema only checks types).
TRAIN_DEFAULTS = {
    "max_steps": -1, "epochs": 2, "batch_size": 4, "grad_accum": 1, "max_length": 2048,
    "warmup_ratio": 0.03, "logging_steps": 10, "save_steps": 200, "save_total_limit": 2,
    "activation_checkpointing": False, "bf16": "auto", "max_grad_norm": 1.0,
    "report_to": "none",  # transformers' report_to: tensorboard, wandb, ... (SpIEL logs sft/*)
    # On a machine without CUDA, train with the nearest CPU equivalent of a GPU-only feature
    # (a paged optimizer -> AdamW) instead of failing; each substitution is named in the summary.
    "cpu_substitutes": False,
}


def resolve_train_cfg(train_cfg: dict) -> dict:
    unknown = sorted(set(train_cfg) - set(TRAIN_DEFAULTS))
    if unknown:
        raise ValueError(f"train config: unknown key(s) {unknown} (known: {sorted(TRAIN_DEFAULTS)})")
    cfg = {**TRAIN_DEFAULTS, **train_cfg}
    if cfg["max_steps"] in (None, 0):
        cfg["max_steps"] = -1
    return cfg
