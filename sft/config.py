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
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .format import CONFIG_NAME
from .io import atomic_write_text
from .optim import SftAdamW, SftSM3

# Facts that save_pretrained records beside the hyperparameters (as peft's adapter_config.json
# does); SftConfig.load ignores them, read_metadata returns them.
METADATA_KEYS = ("base_model_name_or_path", "sft_version", "tunable_weights", "targeted_weights")
# Each selection and the optimizer it pairs with (SFT-MA ranks growth by SM3's accumulators):
# SftTrainer and any other training loop read the choice here.
OPTIMIZERS = {"ag": SftAdamW, "ma": SftSM3}
SELECTIONS = tuple(OPTIMIZERS)
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
        """Raise ``ValueError`` naming the offending key for any impossible setting. Types are
        checked, not coerced: ``density: true`` or ``"0.05"``, ``seed: "zero"`` and NaN or
        infinite numbers are errors."""
        for key in ("density", "initial_reselection_rate"):
            value = getattr(self, key)
            if value is not None and not _is_real(value):
                raise ValueError(f"SftConfig: '{key}' must be a finite number, got {value!r}")
        for key in ("num_tunable_weights", "seed", "reselection_steps", "accumulation_steps"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"SftConfig: '{key}' must be an integer, got {value!r}")
        for key in ("selection", "schedule", "delta_dtype"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"SftConfig: '{key}' must be a string, got {getattr(self, key)!r}")
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

    @property
    def optimizer_class(self) -> type:
        """The optimizer this selection pairs with: SftAdamW (AG) or SftSM3 (MA)."""
        return OPTIMIZERS[self.selection]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "SftConfig") -> "SftConfig":
        """The config in ``data``; the metadata keys ``save`` may add (``METADATA_KEYS``) are
        ignored."""
        data = {k: v for k, v in data.items() if k not in METADATA_KEYS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown SftConfig key(s) {unknown}")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Write the config as JSON to ``path`` (a file, or a directory -> ``sft_config.json``),
        with ``metadata`` (keys from ``METADATA_KEYS``) beside the hyperparameters."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        metadata = dict(metadata or {})
        unknown = sorted(set(metadata) - set(METADATA_KEYS))
        if unknown:
            raise ValueError(f"SftConfig.save: unknown metadata key(s) {unknown} "
                             f"(known: {list(METADATA_KEYS)})")
        data = {**self.to_dict(), **metadata}
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SftConfig":
        """Read a config written by :meth:`save` (a file, or a directory holding one)."""
        return cls.from_dict(_read_json(path), source=str(_config_path(path)))


def _is_real(value) -> bool:
    """A finite int or float, not a bool (``True`` is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _config_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / CONFIG_NAME if path.is_dir() else path


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def _read_json(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; anything unreadable raises ``ValueError`` naming the file:
    not UTF-8, invalid JSON, NaN or Infinity (JSON has neither; Python's reader accepts them),
    nesting too deep, an integer too long to convert."""
    path = _config_path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 (byte {err.start}: {err.reason})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    except RecursionError:
        raise ValueError(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as err:  # a NaN or Infinity, or an integer past 4300 digits
        raise ValueError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_metadata(path: str | os.PathLike) -> dict:
    """What ``save_pretrained`` recorded beside the config: ``base_model_name_or_path``,
    ``sft_version`` (the library that wrote it), ``tunable_weights`` (the budget, in weights)
    and ``targeted_weights`` (the size of the matrices it was spread over); absent keys are
    missing (files from older versions)."""
    data = _read_json(path)
    return {k: data[k] for k in METADATA_KEYS if k in data}

