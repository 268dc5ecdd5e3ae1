"""Loading a base model and its tokenizer the way every method needs them: dtype, device,
optional 4-bit NF4."""
from __future__ import annotations

import os

import torch


def default_device() -> str:
    """This process's device. Under torchrun each process owns GPU LOCAL_RANK: loading every
    process's copy onto the current GPU (cuda:0) would stack them there, and DDP refuses a 4-bit
    model placed on another GPU than its process's."""
    if not torch.cuda.is_available():
        return "cpu"
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{local_rank}" if local_rank is not None else "cuda"


def bf16_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_bf16(setting) -> bool:
    """train_cfg `bf16`: True, False, or "auto" (on where the hardware supports it)."""
    if setting in ("auto", None):
        return bf16_supported()
    if setting and not bf16_supported():
        raise ValueError("train.bf16 is true but this device has no bf16 support; use 'auto'")
    return bool(setting)


def nf4_config(compute_dtype: torch.dtype):
    """The paper's 4-bit setting (QLoRA's): NormalFloat4 with double quantization."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)


def load_base(model_path: str, dtype: torch.dtype, quantize: str | None = None):
    """A causal LM from a folder or hub id; `quantize="nf4"` stores the linear weights in 4 bits."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype}
    if quantize:
        if quantize != "nf4":
            raise ValueError(f"quantize: only 'nf4' is supported, got {quantize!r}")
        kwargs.update(quantization_config=nf4_config(dtype), device_map={"": default_device()})
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if not quantize:
        model.to(default_device())
    return model


def load_tokenizer(model_path: str):
    """The model's tokenizer, with a pad token (Llama-2 has none; padded positions are masked)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
