"""SpIEL sparse fine-tuning (Ansell et al. 2024): SFT-AG, SFT-MA and qSFT for any PyTorch model
with linear layers. Needs only torch and safetensors; transformers (the Trainer integration,
which also needs accelerate: the ``trainer`` extra), huggingface_hub (push and load by repo id)
and bitsandbytes (4-bit base models) are imported only when used.
"""

from .config import SftConfig, read_metadata
from .hub import export_merged
from .model import SftModel, get_sft_model
from .optim import SftAdamW, SftSM3
from .selection import SftSelector
from .targets import lora_equivalent_budget
from .version import __version__

__all__ = [
    "SftConfig",
    "SftModel",
    "get_sft_model",
    "SftAdamW",
    "SftSM3",
    "SftSelector",
    "SftTrainer",
    "SftTrainerMixin",
    "SftTrainerCallback",
    "export_merged",
    "lora_equivalent_budget",
    "read_metadata",
    "__version__",
]

# These subclass transformers' classes: import transformers only on use.
_LAZY = {"SftTrainerCallback": "callback", "SftTrainer": "trainer", "SftTrainerMixin": "trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sft' has no attribute {name!r}")
