"""SpIEL (SFT-AG, SFT-MA) and their 4-bit variants through the `sft` library.

The budget is LoRA-equivalent: `r` -> sft.lora_equivalent_budget(model, r) tuned weights on the
same modules, each matrix at the same density. AG pairs with SftAdamW, MA with SftSM3; the
selector runs in the library's SftTrainerCallback. With `quantize: nf4` the base is 4-bit NF4
and the deltas bf16 (qSFT, PROTOCOL.md); such artifacts stay unmerged for evaluation.
"""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.loading import load_base
from baselines.registry import BuildContext, Builder, register

SFT_KEYS = {"selection", "r", "target_modules", "reselection_steps", "accumulation_steps",
            "initial_reselection_rate", "schedule", "sm3_momentum", "sm3_beta"}


def sft_config(model, method: dict):
    from sft import SftConfig, lora_equivalent_budget

    unknown = sorted(set(method) - SFT_KEYS - {"name", "builder", "model_size", "lr",
                                                 "weight_decay", "quantize"})
    if unknown:
        raise ValueError(f"method {method['name']!r}: the sft builder does not take {unknown} "
                         f"(keys: {sorted(SFT_KEYS)})")
    targets = method.get("target_modules")
    budget = lora_equivalent_budget(model, int(method["r"]), targets)
    keys = ("reselection_steps", "accumulation_steps", "initial_reselection_rate", "schedule")
    return SftConfig(num_tunable_weights=budget, selection=method["selection"],
                     target_modules=targets, delta_dtype="bfloat16" if method.get("quantize") else "float32",
                     **{k: method[k] for k in keys if k in method})


@register("sft")
class SftBuilder(Builder):
    owns_checkpoints = True  # an SftModel is no PreTrainedModel: checkpoint its deltas only

    def build(self, model_path: str, method: dict, ctx: BuildContext) -> torch.nn.Module:
        from sft import get_sft_model

        base = load_base(model_path, ctx.dtype, method.get("quantize"))
        model = get_sft_model(base, sft_config(base, method))
        if method.get("quantize"):
            # The Trainer refuses a quantized model unless an adapter is attached; the sparse
            # deltas are that adapter (transformers checks this flag, set by its peft support).
            model._hf_peft_config_loaded = True
        return model

    def restore_checkpoint(self, model, directory: Path) -> None:
        raise RuntimeError(
            f"cannot resume the SFT run from {directory}: the sft library does not checkpoint "
            "its selector state yet (SftTrainerCallback refuses mid-run resumption). Delete "
            f"{Path(directory).parent} to restart the run from step 0.")

    def optimizer(self, model, method: dict, ctx: BuildContext):
        from sft import SftAdamW, SftSM3

        groups = model.trainable_parameters_groups
        lr, wd = float(method["lr"]), float(method.get("weight_decay", 0.0))
        if method["selection"] == "ma":
            return SftSM3(groups, lr=lr, weight_decay=wd, momentum=float(method.get("sm3_momentum", 0.0)),
                          beta=float(method.get("sm3_beta", 0.0)))
        return SftAdamW(groups, lr=lr, weight_decay=wd)

    def callbacks(self, model, method: dict, optimizer) -> list:
        from sft import SftSelector, SftTrainerCallback

        return [SftTrainerCallback(SftSelector(model, optimizer))]

    def save(self, model, artifact_dir: Path, optimizer=None) -> None:
        model.save_pretrained(artifact_dir)

    def load(self, model_path: str, artifact_dir: Path, method: dict, dtype: torch.dtype):
        from sft import SftModel

        sft = SftModel.from_pretrained(load_base(model_path, dtype, method.get("quantize")), artifact_dir)
        return sft if method.get("quantize") else sft.merge_and_unload()
