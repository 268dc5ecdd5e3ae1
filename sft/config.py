"""`SftConfig`: every hyperparameter of SpIEL sparse fine-tuning in one JSON-serialisable place.

The defaults are the paper's (Ansell et al. 2024, section 3 and Table 4): reselection every
S = 20 steps, a gamma = 5 step gradient-estimation phase, peak replacement rate alpha = 0.2 with
a linear decay. The budget is either a density (the same for every targeted matrix) or an
absolute number of tunable weights, which the paper matches to a LoRA rank with
:func:`sft.lora_equivalent_budget`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .io import atomic_write_text

CONFIG_NAME = "sft_config.json"
SELECTIONS = ("ag", "ma")
SCHEDULES = ("linear", "cosine")
DELTA_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class SftConfig:
    """Hyperparameters of one sparse fine-tuning.

    Budget: give exactly one of ``density`` (fraction of each targeted weight matrix that is
    tunable, in (0, 1]) or ``num_tunable_weights`` (total over all targeted matrices, shared
    out in proportion to their sizes so every matrix gets the same density).

    ``selection``: ``"ag"`` (accumulated gradients, pair with :class:`sft.SftAdamW`) or
    ``"ma"`` (momentum approximation from SM3's accumulators, pair with :class:`sft.SftSM3`).

    ``target_modules``: ``None`` targets every linear layer inside the model's repeated
    blocks (any ``nn.ModuleList``), i.e. all projections but not the LM head; otherwise a
    list of module-name suffixes as in peft (``["q_proj", "v_proj"]``).

    ``delta_dtype``: dtype of the tuned values; the paper uses ``"float32"``, and
    ``"bfloat16"`` with a 4-bit base model (qSFT).

    ``seed`` makes the random initial index sets reproducible, and identical on every
    data-parallel rank.
    """

    density: float | None = None
    num_tunable_weights: int | None = None
    selection: str = "ag"
    reselection_steps: int = 20
    accumulation_steps: int = 5
    initial_reselection_rate: float = 0.2
    schedule: str = "linear"
    target_modules: list[str] | None = None
    delta_dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target_modules is not None:
            if isinstance(self.target_modules, str):
                self.target_modules = [self.target_modules]
            self.target_modules = list(self.target_modules)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending key for any impossible setting."""
        if (self.density is None) == (self.num_tunable_weights is None):
            raise ValueError(
                "SftConfig: give exactly one of 'density' and 'num_tunable_weights' "
                f"(got density={self.density!r}, num_tunable_weights={self.num_tunable_weights!r})"
            )
        if self.density is not None and not (0.0 < float(self.density) <= 1.0):
            raise ValueError(f"SftConfig: 'density' must lie in (0, 1], got {self.density!r}")
        if self.num_tunable_weights is not None and (
            isinstance(self.num_tunable_weights, bool)
            or int(self.num_tunable_weights) != self.num_tunable_weights
            or self.num_tunable_weights <= 0
        ):
            raise ValueError(
                "SftConfig: 'num_tunable_weights' must be a positive integer, "
                f"got {self.num_tunable_weights!r}"
            )
        if self.selection not in SELECTIONS:
            raise ValueError(
                f"SftConfig: unknown 'selection' {self.selection!r}; expected one of {SELECTIONS}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"SftConfig: unknown 'schedule' {self.schedule!r}; expected one of {SCHEDULES}"
            )
        for key in ("reselection_steps", "accumulation_steps"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SftConfig: '{key}' must be an integer >= 1, got {value!r}")
        if self.accumulation_steps > self.reselection_steps:
            raise ValueError(
                "SftConfig: 'accumulation_steps' (the gradient-estimation phase, gamma="
                f"{self.accumulation_steps}) cannot exceed 'reselection_steps' "
                f"(S={self.reselection_steps})"
            )
        if not (0.0 <= float(self.initial_reselection_rate) <= 1.0):
            raise ValueError(
                "SftConfig: 'initial_reselection_rate' must lie in [0, 1], "
                f"got {self.initial_reselection_rate!r}"
            )
        if self.delta_dtype not in DELTA_DTYPES:
            raise ValueError(
                f"SftConfig: unknown 'delta_dtype' {self.delta_dtype!r}; "
                f"expected one of {tuple(DELTA_DTYPES)}"
            )
        if self.target_modules is not None and (
            not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules)
        ):
            raise ValueError(
                "SftConfig: 'target_modules' must be None or a non-empty list of module-name "
                f"suffixes, got {self.target_modules!r}"
            )

    @property
    def torch_delta_dtype(self) -> torch.dtype:
        return DELTA_DTYPES[self.delta_dtype]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "SftConfig") -> "SftConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown SftConfig key(s) {unknown}")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON to ``path`` (a file, or a directory -> ``sft_config.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SftConfig":
        """Read a config written by :meth:`save` (a file, or a directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

