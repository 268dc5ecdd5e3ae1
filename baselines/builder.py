"""What a builder is: it turns a base model into a trainable one, says how to optimise it, saves
the trained artifact and loads it back for evaluation. baselines.registry lists the builders.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch

from baselines.checks import IDENTITY_KEYS, LOOP_KEYS, builder_kwargs

__all__ = ["IDENTITY_KEYS", "LOOP_KEYS", "BuildContext", "Builder", "builder_kwargs"]


@dataclass
class BuildContext:
    """What the training loop decides and every builder reads: precision, checkpointing and the
    optimizer's settings. `for_method` is the one place that reads them from a resolved method."""

    dtype: torch.dtype  # base-weight dtype (bf16 on capable GPUs, else fp32)
    lr: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "adamw_torch"  # TrainingArguments.optim, where the builder has none
    activation_checkpointing: bool = False
    bf16: bool = False  # autocast in bf16 during training
    max_grad_norm: float = 1.0

    @classmethod
    def for_method(cls, method: dict, dtype: torch.dtype, activation_checkpointing: bool = False,
                   **settings) -> "BuildContext":
        """The method's optimizer settings; its `activation_checkpointing`, where it sets one,
        wins over the loop's (the paper checkpoints 7b full fine-tuning whatever the rest do)."""
        if "lr" not in method and method.get("builder") != "untuned":
            raise ValueError(f"method {method.get('name')!r} has no 'lr'")
        own = method.get("activation_checkpointing")
        return cls(dtype=dtype, lr=float(method.get("lr", 0.0)),
                   weight_decay=float(method.get("weight_decay", 0.0)),
                   optimizer=method.get("optimizer") or "adamw_torch",
                   activation_checkpointing=activation_checkpointing if own is None else bool(own),
                   **settings)


class Builder(ABC):
    """One family of methods. Subclasses implement build/save/load; the rest has defaults."""

    # What messages call it, and the keys of a resolved method it takes besides IDENTITY_KEYS
    # (None: it checks them itself, as the peft builder's config class does).
    title: str = "this builder"
    keys: frozenset[str] | None = LOOP_KEYS

    def check(self, method: dict) -> None:
        """Raise ValueError for a resolved method this builder cannot train, without loading a
        model: the DAG runs it for every method a config uses before any job starts
        (baselines.registry.check_method), and `build` runs it first. By default: the keys
        (`keys`); the values were checked against the method schema."""
        if self.keys is None:
            return
        unknown = sorted(set(method) - IDENTITY_KEYS - self.keys)
        if unknown:
            raise ValueError(f"method {method.get('name')!r}: {self.title} does not take "
                             f"{unknown} (keys: {sorted(self.keys)})")

    @abstractmethod
    def build(self, model_path: str, method: dict, ctx: BuildContext) -> torch.nn.Module:
        """The model to train, on the default device, with only the tuned parameters trainable."""

    def optimizer(self, model: torch.nn.Module, method: dict,
                  ctx: BuildContext) -> torch.optim.Optimizer | None:
        """None: the Trainer's AdamW over parameters with requires_grad, at ctx.lr."""
        return None

    def callbacks(self, model: torch.nn.Module, method: dict, optimizer) -> list:
        return []

    @abstractmethod
    def save(self, model: torch.nn.Module, artifact_dir: Path, optimizer=None) -> None:
        """Write the trained artifact (adapter, sparse delta or full weights) into artifact_dir."""

    @abstractmethod
    def load(self, model_path: str, artifact_dir: Path, method: dict, dtype: torch.dtype):
        """The evaluation model: merged into the base where possible, unmerged over 4-bit."""

    def trainable_parameters(self, model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
