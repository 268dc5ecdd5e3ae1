"""SpIEL (SFT-AG, SFT-MA) and their 4-bit variants through the `sft` library.

The budget is LoRA-equivalent: `r` -> sft.lora_equivalent_budget(model, r) tuned weights on the
same modules, each matrix at the same density. AG pairs with SftAdamW, MA with SftSM3 (the
library's SftConfig.optimizer_class); the selector runs in the library's SftTrainerCallback.
With `quantize: nf4` the base is 4-bit NF4 and the deltas bf16 (qSFT, PROTOCOL.md); such
artifacts stay unmerged for evaluation.
"""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.builder import BuildContext, Builder
from baselines.loading import load_base

__all__ = ["SftBuilder", "sft_config"]


def sft_config(model, method: dict, budget: int | None = None):
    """The method's SftConfig; its budget the LoRA rank `r`-equivalent on `model` (or `budget`,
    for a check without a model). The keys are SftBuilder.check's."""
    from sft import SftConfig, lora_equivalent_budget

    targets = method.get("target_modules")
    if budget is None:
        budget = lora_equivalent_budget(model, int(method["r"]), targets)
    keys = ("reselection_steps", "accumulation_steps", "initial_reselection_rate", "schedule")
    try:
        return SftConfig(num_tunable_weights=budget, selection=method["selection"],
                         target_modules=targets,
                         delta_dtype="bfloat16" if method.get("quantize") else "float32",
                         **{k: method[k] for k in keys if k in method})
    except KeyError as err:
        raise ValueError(f"method {method['name']!r}: the sft builder needs {err}") from None
    except ValueError as err:
        raise ValueError(f"method {method['name']!r}: {err}") from None


class SftBuilder(Builder):
    # Checkpoints are the library's (sft.SftTrainer, which finetune.train's trainer is): the
    # deltas, the Trainer's optimizer, scheduler, RNG and state files, and the selector's file.
    title = "the sft builder"
    keys = frozenset({"selection", "r", "target_modules", "reselection_steps", "accumulation_steps",
                      "initial_reselection_rate", "schedule", "sm3_momentum", "sm3_beta",
                      "lr", "weight_decay", "quantize"})

    def check(self, method: dict) -> None:
        super().check(method)  # the keys
        sft_config(None, method, budget=1)  # SftConfig's own checks (gamma <= S, ...)

    def build(self, model_path: str, method: dict, ctx: BuildContext) -> torch.nn.Module:
        from sft import get_sft_model

        self.check(method)
        base = load_base(model_path, ctx.dtype, method.get("quantize"))
        return get_sft_model(base, sft_config(base, method))

    def optimizer(self, model, method: dict, ctx: BuildContext):
        from sft import SftSM3

        cls = model.sft_config.optimizer_class  # the library's pairing of selection and optimizer
        sm3 = {"momentum": float(method.get("sm3_momentum", 0.0)), "beta": float(method.get("sm3_beta", 0.0))}
        return cls(model.trainable_parameters_groups, lr=ctx.lr, weight_decay=ctx.weight_decay,
                   **(sm3 if cls is SftSM3 else {}))

    def callbacks(self, model, method: dict, optimizer) -> list:
        from sft import SftSelector, SftTrainerCallback

        return [SftTrainerCallback(SftSelector(model, optimizer))]

    def save(self, model, artifact_dir: Path, optimizer=None) -> None:
        model.save_pretrained(artifact_dir)

    def load(self, model_path: str, artifact_dir: Path, method: dict, dtype: torch.dtype):
        from sft import SftModel

        sft = SftModel.from_pretrained(load_base(model_path, dtype, method.get("quantize")), artifact_dir)
        return sft if method.get("quantize") else sft.merge_and_unload()
