"""Full fine-tuning: every weight trains; the artifact is the whole model (safetensors).

By default the weights stay fp32 (the optimizer's master copy) with bf16 autocast on capable
GPUs: training bf16 weights directly with AdamW loses small updates to rounding. The method file
may train them in bf16 (`weights_dtype: bfloat16`), as the paper does at 7b to fit one A100.
"""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.builder import BuildContext, Builder
from baselines.loading import load_base


def weights_dtype(method: dict) -> torch.dtype:
    dtype = getattr(torch, method.get("weights_dtype") or "float32", None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"method {method['name']!r}: weights_dtype "
                         f"{method.get('weights_dtype')!r} is not a torch dtype")
    return dtype


class FullBuilder(Builder):
    title = "full fine-tuning"

    def check(self, method: dict) -> None:
        super().check(method)  # full fine-tuning takes no builder keys
        weights_dtype(method)

    def build(self, model_path: str, method: dict, ctx: BuildContext) -> torch.nn.Module:
        self.check(method)
        return load_base(model_path, weights_dtype(method))

    def save(self, model: torch.nn.Module, artifact_dir: Path, optimizer=None) -> None:
        model.save_pretrained(artifact_dir)

    def load(self, model_path: str, artifact_dir: Path, method: dict, dtype: torch.dtype):
        return load_base(str(artifact_dir), dtype)
