"""Reading (and, for merging, rewriting) the frozen base weight of a linear layer.

A plain ``nn.Linear`` gives its weight as is. A bitsandbytes ``Linear4bit`` (NF4, qSFT) holds
a packed ``Params4bit``; it is dequantized on use, the paper's Eq. 11. bitsandbytes is
imported only when such a layer is met, so the library works without it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def is_4bit(linear: nn.Linear) -> bool:
    return type(linear.weight).__name__ == "Params4bit"


def _bnb():
    try:
        import bitsandbytes
        import bitsandbytes.functional  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this model has 4-bit (bitsandbytes) layers but bitsandbytes is not importable; "
            "install it with `pip install bitsandbytes` (the `quant` extra)"
        ) from err
    return bitsandbytes


def dense_weight(linear: nn.Linear) -> tuple[Tensor, bool]:
    """``(W, fresh)``: the ``(d_out, d_in)`` base weight; ``fresh`` says W is a new tensor
    (dequantized) that the caller may modify in place, else it is the layer's own weight."""
    if is_4bit(linear):
        weight = linear.weight
        return _bnb().functional.dequantize_4bit(weight.data, weight.quant_state), True
    return linear.weight, False


def replace_weight(linear: nn.Linear, weight: Tensor) -> None:
    """Store ``weight`` as the layer's new frozen weight, re-quantizing a 4-bit layer (which
    rounds: merging into NF4 is lossy, exactly as with qLoRA's merge)."""
    if is_4bit(linear):
        old = linear.weight
        bnb = _bnb()
        new = bnb.nn.Params4bit(
            weight.to(old.quant_state.dtype).cpu(),
            requires_grad=False,
            quant_type=old.quant_type,
            compress_statistics=old.compress_statistics,
            blocksize=old.blocksize,
            quant_storage=old.quant_storage,
        )
        linear.weight = new.to(old.device)
    else:
        with torch.no_grad():
            linear.weight.copy_(weight)
