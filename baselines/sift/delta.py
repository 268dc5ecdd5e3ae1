"""The SIFT artifact: per tuned weight, flat indices and the delta from the pretrained values."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "sift_delta.safetensors"
CONFIG = "sift_config.json"


def save_sift_delta(model: torch.nn.Module, optimizer, directory: Path, config: dict) -> None:
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {}
    for param, (indices, delta) in optimizer.deltas().items():
        name = names[id(param)]
        tensors[f"{name}.indices"] = indices.cpu().contiguous()
        tensors[f"{name}.values"] = delta.cpu().contiguous()
    if not tensors:
        raise RuntimeError("SIFT has no mask yet: nothing was trained")
    save_file(tensors, str(Path(directory) / WEIGHTS))
    (Path(directory) / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


@torch.no_grad()
def apply_sift_delta(model: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """Add a saved delta into the weights of `model` (merging: the eval model is a plain model)."""
    tensors = load_file(str(Path(directory) / WEIGHTS))
    params = dict(model.named_parameters())
    names = {key.rsplit(".", 1)[0] for key in tensors}
    for name in sorted(names):
        if name not in params:
            raise ValueError(f"{directory}/{WEIGHTS}: the model has no parameter {name!r}")
        flat = params[name].data.view(-1)
        indices, values = tensors[f"{name}.indices"].to(flat.device), tensors[f"{name}.values"]
        flat[indices] = (flat[indices].float() + values.to(flat.device)).to(flat.dtype)
    return model
