"""What the cost model needs to know about a method and a training setup.

The methods' facts (which family, 4-bit or not, which growth criterion) are their files'
(`config/methods/*.yaml`, read through `baselines`); `Method.from_resolved` reads them from a
resolved method, and `TABLE3_METHODS` restates them for the command line and the paper
validation (tests/analysis/test_cost_model.py checks that the two agree).
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("frozen", "lora", "sft")
# method id -> (family, 4-bit, SpIEL growth criterion): Table 3's methods and their floors.
TABLE3_METHODS = {
    "original": ("frozen", False, None), "original-4bit": ("frozen", True, None),
    "lora": ("lora", False, None), "qlora": ("lora", True, None),
    "sft-ag": ("sft", False, "ag"), "sft-ma": ("sft", False, "ma"),
    "qsft-ag": ("sft", True, "ag"), "qsft-ma": ("sft", True, "ma"),
}
_BUILDER_FAMILY = {"untuned": "frozen", "peft": "lora", "sft": "sft"}


@dataclass(frozen=True)
class Method:
    """``rank``: LoRA's r, and SpIEL's LoRA-equivalent budget. ``reselection_steps`` (S) and
    ``accumulation_steps`` (gamma) set how often SFT-AG estimates candidate gradients;
    ``sm3_momentum`` > 0 gives SFT-MA a momentum buffer."""

    name: str
    family: str
    quantized: bool = False
    selection: str | None = None
    rank: int = 16
    lora_dropout: float = 0.1
    reselection_steps: int = 20
    accumulation_steps: int = 5
    sm3_momentum: float = 0.0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.family == "sft" and self.selection not in ("ag", "ma"):
            raise ValueError(f"method {self.name!r}: SpIEL needs selection 'ag' or 'ma', got {self.selection!r}")
        if self.family != "frozen" and self.rank < 1:
            raise ValueError(f"method {self.name!r}: rank must be >= 1, got {self.rank}")

    @classmethod
    def table3(cls, name: str, rank: int) -> "Method":
        if name not in TABLE3_METHODS:
            raise ValueError(f"unknown method {name!r}; the cost model knows {sorted(TABLE3_METHODS)} "
                             "(or give a resolved method: Method.from_resolved)")
        family, quantized, selection = TABLE3_METHODS[name]
        return cls(name, family, quantized, selection, rank)

    @classmethod
    def from_resolved(cls, method: dict) -> "Method":
        """From a resolved method (baselines.resolve_method / runs/<run>/method.json)."""
        name = method.get("name", "?")
        family = _BUILDER_FAMILY.get(method.get("builder"))
        if family is None or (family == "lora" and method.get("peft_config") != "LoraConfig"):
            raise ValueError(f"method {name!r}: the cost model covers LoRA, SpIEL and the frozen "
                             f"model, not builder {method.get('builder')!r} / {method.get('peft_config')!r}")
        return cls(name, family, bool(method.get("quantize")), method.get("selection"),
                   int(method.get("r", 16)), float(method.get("lora_dropout", 0.1)),
                   int(method.get("reselection_steps", 20)), int(method.get("accumulation_steps", 5)),
                   float(method.get("sm3_momentum", 0.0)))


def floor_of(method: Method) -> Method:
    """The frozen model a method is compared with (the 4-bit one for 4-bit methods), as each
    method file's `profile.floor` names it."""
    return Method("original-4bit" if method.quantized else "original", "frozen", method.quantized)


@dataclass(frozen=True)
class Setup:
    """One training step's shape and precision. On CUDA the paper's setting: bf16 weights and
    bf16 autocast; on CPU (this harness) fp32 throughout."""

    batch_size: int = 1
    seq_len: int = 2048
    activation_checkpointing: bool = False
    device: str = "cuda"

    def __post_init__(self):
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', got {self.device!r}")
        if self.batch_size < 1 or self.seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {self.batch_size}, {self.seq_len}")

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def compute_bytes(self) -> int:
        """Bytes per element of activations and (non-4-bit) weights: bf16 on CUDA, fp32 on CPU."""
        return 2 if self.device == "cuda" else 4
