"""The method registry: resolve a method's config, train it through finetune.train, load the
result for evaluation. See baselines/README.md for the methods and how to add one."""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.config import available_methods, resolve_method
from baselines.loading import bf16_supported, load_base
from baselines.registry import get_builder

__all__ = ["resolve_method", "load_for_eval", "available_methods", "get_builder"]


def load_for_eval(model_path: str, run_dir: Path | None, method: dict | None,
                  dtype: torch.dtype | None = None):
    """(model, tokenizer) ready for evaluation, in eval mode.

    `run_dir` None is the untuned "Original" model; a method with `quantize: nf4` and no run is
    "Original (4-bit)". Trained artifacts are merged into the base where possible; over a 4-bit
    base they stay unmerged.
    """
    from finetune.train import load_tokenizer

    dtype = dtype or (torch.bfloat16 if bf16_supported() else torch.float32)
    tokenizer = load_tokenizer(model_path)
    if run_dir is None:
        model = load_base(model_path, dtype, (method or {}).get("quantize"))
    else:
        if method is None:
            raise ValueError(f"load_for_eval: run {run_dir} needs its method (train_summary.json)")
        artifact = Path(run_dir) / "artifact"
        if not artifact.is_dir():
            raise FileNotFoundError(f"{artifact}: no trained artifact (did training finish?)")
        model = get_builder(method).load(model_path, artifact, method, dtype)
    return model.eval(), tokenizer
