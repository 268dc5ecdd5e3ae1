"""The `sift` builder: SIFT on the same linear layers as LoRA/SFT (all block linears), each matrix
at the same density: `density` of the targeted weights where the method sets it (SIFT's own
settings), else the LoRA rank `r`-equivalent budget (sft.lora_equivalent_budget)."""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.builder import BuildContext, Builder
from baselines.loading import load_base
from baselines.sift.delta import apply_sift_delta, save_sift_delta
from baselines.sift.optim import SiftAdamW


def _targets(model, method):
    from sft.targets import allocate_budget, find_target_linears, lora_equivalent_budget

    targets = [lin for _, lin in find_target_linears(model, method.get("target_modules"))]
    sizes = [lin.weight.numel() for lin in targets]
    if method.get("density") is not None:
        density = float(method["density"])
        if not 0.0 < density <= 1.0:
            raise ValueError(f"method {method['name']!r}: density must be in (0, 1], got {density}")
        budget = round(density * sum(sizes))
    else:
        budget = lora_equivalent_budget(model, int(method["r"]), method.get("target_modules"))
    counts = allocate_budget(sizes, num_tunable_weights=budget)
    return [lin.weight for lin in targets], counts


class SiftBuilder(Builder):
    title = "SIFT"
    keys = frozenset({"r", "density", "target_modules", "mask_batches", "lr", "weight_decay"})

    def build(self, model_path: str, method: dict, ctx: BuildContext) -> torch.nn.Module:
        self.check(method)
        model = load_base(model_path, ctx.dtype)
        for param in model.parameters():
            param.requires_grad_(False)
        for weight in _targets(model, method)[0]:
            weight.requires_grad_(True)
        return model

    def optimizer(self, model, method: dict, ctx: BuildContext):
        weights, counts = _targets(model, method)
        self._budget = sum(counts)
        return SiftAdamW(weights, counts, lr=ctx.lr, weight_decay=ctx.weight_decay,
                         max_grad_norm=ctx.max_grad_norm, mask_batches=int(method.get("mask_batches", 1)))

    def trainable_parameters(self, model) -> int:
        return self._budget

    def save(self, model, artifact_dir: Path, optimizer=None) -> None:
        if optimizer is None:
            raise ValueError("SIFT's artifact needs its optimizer (it holds the mask)")
        save_sift_delta(model, optimizer, artifact_dir,
                        {"format": "sift-delta", "base_model": model.config.name_or_path})

    def load(self, model_path: str, artifact_dir: Path, method: dict, dtype: torch.dtype):
        return apply_sift_delta(load_base(model_path, dtype), artifact_dir)
