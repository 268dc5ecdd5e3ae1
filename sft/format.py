"""The on-disk format of a saved SFT: its file names, the safetensors layout of the deltas
(per layer ``<name>.indices``, ``.values``, ``.grown_at``, ``.shape``), reading and checking
them against a model, composing several, and the folder's model card.

One module owns the format so that saving (:mod:`sft.model`) and the Hub (:mod:`sft.hub`)
both read it from here instead of from each other.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
import torch
from torch import Tensor, nn

from .io import atomic_save_safetensors, read_safetensors
from .layer import SftLinear
from .targets import check_supported_weight, weight_shape

CONFIG_NAME = "sft_config.json"
WEIGHTS_NAME = "sft_model.safetensors"
FORMAT = "spiel-sft"
FORMAT_VERSION = "1"
FIELDS = ("indices", "values", "grown_at", "shape")
INTEGER_DTYPES = (torch.int32, torch.int64)
# A Hub repo id ("user/repo" or "repo"), as opposed to a local path.
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

Deltas = dict[str, tuple[Tensor, Tensor, Tensor]]


def write_deltas(layers, path: Path, num_reselections: int) -> Path:
    """Write ``(name, SftLinear)`` pairs' deltas to ``path`` (safetensors, atomically)."""
    tensors = {}
    for name, layer in layers:
        tensors[f"{name}.indices"] = layer.indices.detach().cpu().contiguous()
        tensors[f"{name}.values"] = layer.values.detach().cpu().contiguous()
        # int32 on disk whatever the layer keeps (int16 while it fits): one format for readers
        tensors[f"{name}.grown_at"] = layer.grown_at.detach().cpu().int().contiguous()
        tensors[f"{name}.shape"] = torch.tensor(layer.shape, dtype=torch.int64)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "num_reselections": str(num_reselections)}
    return atomic_save_safetensors(tensors, path, metadata)


def read_deltas(path: Path, model: nn.Module) -> tuple[Deltas, int]:
    """Read and check a saved SFT against ``model``: ``({layer: (indices, values, grown_at)},
    num_reselections)``. Raises ``ValueError`` naming the file and key on any mismatch."""
    if not path.is_file():
        raise FileNotFoundError(f"no SFT weights at {path}")
    metadata, tensors = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (metadata {metadata})")
    layers: dict[str, dict[str, Tensor]] = {}
    for key, tensor in tensors.items():
        name, _, field = key.rpartition(".")
        if field not in FIELDS or not name:
            raise ValueError(f"{path}: unexpected key {key!r}")
        layers.setdefault(name, {})[field] = tensor
    deltas = {}
    for name, fields in layers.items():
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise ValueError(f"{path}: layer {name!r} lacks {missing}")
        try:
            linear = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{path}: key {name!r} names no module of {type(model).__name__}") from None
        if isinstance(linear, SftLinear):  # a model carrying deltas: check the frozen layer
            linear = linear.base_layer
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{path}: {name!r} is a {type(linear).__name__}, not a linear layer")
        try:
            check_supported_weight(name, linear)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        for field, allowed, what in (("indices", INTEGER_DTYPES, "int32 or int64"),
                                     ("grown_at", INTEGER_DTYPES, "int32 or int64"),
                                     ("shape", INTEGER_DTYPES, "int32 or int64")):
            if fields[field].dtype not in allowed:  # float indices would be truncated on use
                raise ValueError(f"{path}: {name}.{field} has dtype {fields[field].dtype}; "
                                 f"expected {what}")
        if not fields["values"].dtype.is_floating_point:
            raise ValueError(f"{path}: {name}.values has dtype {fields['values'].dtype}; "
                             "expected a floating-point dtype")
        if fields["shape"].shape != (2,):
            raise ValueError(f"{path}: {name}.shape must hold 2 integers (rows, columns), got a "
                             f"tensor of shape {tuple(fields['shape'].shape)}")
        shape = tuple(int(s) for s in fields["shape"].tolist())
        if shape != weight_shape(linear):
            raise ValueError(f"{path}: {name}.shape is {shape} but the model's weight is "
                             f"{weight_shape(linear)}")
        indices, values, grown_at = fields["indices"], fields["values"], fields["grown_at"]
        if not (indices.dim() == 1 and indices.shape == values.shape == grown_at.shape):
            raise ValueError(f"{path}: {name}: indices, values and grown_at differ in shape")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= shape[0] * shape[1]):
            raise ValueError(f"{path}: {name}.indices out of range for shape {shape}")
        if torch.unique(indices).numel() != indices.numel():
            raise ValueError(f"{path}: {name}.indices are not unique")
        if not bool(torch.isfinite(values).all()):  # would poison the merged weights
            raise ValueError(f"{path}: {name}.values holds NaN or infinite values")
        deltas[name] = (indices, values, grown_at)
    return deltas, _num_reselections(path, metadata)


def _num_reselections(path: Path, metadata: dict) -> int:
    text = metadata.get("num_reselections", "0")
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 18):
        raise ValueError(f"{path}: metadata num_reselections must be a non-negative integer, "
                         f"got {text!r}")
    return int(text)


def check_same_base(configs: list[tuple[Path, dict]]) -> None:
    """Raise ``ValueError`` when saved SFTs record different base models
    (``base_model_name_or_path``): their deltas are differences to different weights, and
    summing them onto one base is meaningless even where the shapes agree."""
    recorded = [(path, str(meta["base_model_name_or_path"])) for path, meta in configs
                if meta.get("base_model_name_or_path")]
    bases = {base for _, base in recorded}
    if len(bases) > 1:
        listed = ", ".join(f"{path}: {base!r}" for path, base in recorded)
        raise ValueError(f"these SFTs were trained on different base models ({listed}); pass "
                         "allow_different_bases=True to compose them anyway")


def compose_deltas(all_deltas: list[Deltas]) -> Deltas:
    """Sum several SFTs: per layer, the union of indices with values added (in fp32)."""
    names = []
    for deltas in all_deltas:
        names += [n for n in deltas if n not in names]
    composed = {}
    for name in names:
        parts = [d[name] for d in all_deltas if name in d]
        indices = torch.cat([p[0].long() for p in parts])
        values = torch.cat([p[1].float() for p in parts])
        grown_at = torch.cat([p[2].int() for p in parts])
        union, inverse = torch.unique(indices, return_inverse=True)
        summed = torch.zeros(union.numel(), dtype=torch.float32).index_add_(0, inverse, values)
        latest = torch.zeros(union.numel(), dtype=torch.int32).scatter_reduce_(
            0, inverse, grown_at, reduce="amax", include_self=False)
        composed[name] = (union, summed, latest)
    return composed


def _hub_id(name: str | None) -> str | None:
    """``name`` if it reads as a Hub model id, not as a local path."""
    if not name or os.path.isabs(name) or name.startswith((".", "~")) or Path(name).exists():
        return None
    return name if REPO_ID.fullmatch(name) else None


def model_card_text(selection: str, metadata: dict) -> str:
    """A short Hub model card (``README.md``) for a saved SFT trained with ``selection``
    (``"ag"`` or ``"ma"``)."""
    base = metadata.get("base_model_name_or_path")
    hub_base = _hub_id(base)
    front = ["---", "library_name: spiel-sft"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front += ["tags:", "- sparse-fine-tuning", "- spiel", "---", ""]
    tunable, targeted = metadata.get("tunable_weights"), metadata.get("targeted_weights")
    budget = (f"{tunable:,d} tunable weights ({100 * tunable / targeted:.3f}% of the "
              f"{targeted:,d} weights of the targeted matrices)" if tunable and targeted else "")
    method = "SFT-AG (accumulated gradients)" if selection == "ag" else \
        "SFT-MA (momentum approximation, SM3)"
    load_base = f'AutoModelForCausalLM.from_pretrained("{hub_base or base or "<base model>"}")'
    body = [
        f"# Sparse fine-tuning of {base or 'a base model'}",
        "",
        "A sparse delta over the base model's weights, trained with SpIEL "
        "(Ansell et al., 2024, *Scaling Sparse Fine-Tuning to Large Language Models*): "
        f"{method}, {budget or 'see sft_config.json for the budget'}. "
        f"Written by spiel-sft {metadata.get('sft_version', '')}.".replace(" .", "."),
        "",
        "```python",
        "from transformers import AutoModelForCausalLM",
        "from sft import SftModel",
        "",
        f"model = SftModel.from_pretrained({load_base}, \"<this repo or folder>\")",
        "merged = model.merge_and_unload()  # a plain transformers model",
        "```",
        "",
        "Files: `sft_model.safetensors` (per matrix: flat indices, values, the reselection at "
        "which each entry was grown, and the shape) and `sft_config.json` (hyperparameters, "
        "base model, library version and budget).",
        "",
    ]
    return "\n".join(front + body)
