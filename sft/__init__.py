"""SpIEL sparse fine-tuning (Ansell et al. 2024): SFT-AG, SFT-MA and qSFT for any PyTorch model
with linear layers. Needs only torch and safetensors; transformers for the Trainer callback and
bitsandbytes for 4-bit base models are imported only when used.
"""

from .config import SftConfig
from .model import SftModel, get_sft_model
from .optim import SftAdamW, SftSM3
from .selection import SftSelector
from .targets import lora_equivalent_budget

__all__ = [
    "SftConfig",
    "SftModel",
    "get_sft_model",
    "SftAdamW",
    "SftSM3",
    "SftSelector",
    "SftTrainerCallback",
    "lora_equivalent_budget",
]


def __getattr__(name: str):
    # The callback subclasses transformers.TrainerCallback: import transformers only on use.
    if name == "SftTrainerCallback":
        from .callback import SftTrainerCallback

        return SftTrainerCallback
    raise AttributeError(f"module 'sft' has no attribute {name!r}")
