"""Every peft method through one builder: the YAML names a peft config class and its kwargs.

`lora`, `ia3`, `qlora` and YAML-only baselines (DoRA = LoraConfig(use_dora=True), SHiRA =
ShiraConfig) all come through here. With `quantize: nf4` the base is loaded in 4-bit and
prepared for k-bit training (QLoRA); such adapters stay unmerged for evaluation, since merging
into a 4-bit weight would re-quantize it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.builder import BuildContext, Builder
from baselines.checks import builder_kwargs
from baselines.loading import load_base


def peft_config(method: dict):
    import peft

    cls_name = method.get("peft_config")
    cls = getattr(peft, cls_name, None) if isinstance(cls_name, str) else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, peft.PeftConfig):
        raise ValueError(f"method {method['name']!r}: peft_config {cls_name!r} is not a peft "
                         f"config class (e.g. LoraConfig, IA3Config, ShiraConfig)")
    kwargs = builder_kwargs(method)
    try:
        return cls(task_type="CAUSAL_LM", **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"method {method['name']!r}: {cls_name} rejects its kwargs: {err}") from None


class PeftBuilder(Builder):
    title = "the peft builder"
    keys = None  # its peft config class decides

    def check(self, method: dict) -> None:
        peft_config(method)  # the class exists and takes these kwargs

    def build(self, model_path: str, method: dict, ctx: BuildContext) -> torch.nn.Module:
        from peft import get_peft_model, prepare_model_for_kbit_training

        config = peft_config(method)  # fail on bad kwargs before loading weights
        base = load_base(model_path, ctx.dtype, method.get("quantize"))
        if method.get("quantize"):
            base = prepare_model_for_kbit_training(
                base, use_gradient_checkpointing=ctx.activation_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False})
        # autocast_adapter_dtype keeps adapter weights fp32 over a bf16 base (PROTOCOL.md).
        return get_peft_model(base, config, autocast_adapter_dtype=True)

    def save(self, model: torch.nn.Module, artifact_dir: Path, optimizer=None) -> None:
        model.save_pretrained(artifact_dir)

    def load(self, model_path: str, artifact_dir: Path, method: dict, dtype: torch.dtype):
        from peft import PeftModel

        base = load_base(model_path, dtype, method.get("quantize"))
        model = PeftModel.from_pretrained(base, str(artifact_dir))
        return model if method.get("quantize") else model.merge_and_unload()
