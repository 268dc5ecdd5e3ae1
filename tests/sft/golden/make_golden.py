"""Regenerates ``golden.json``: losses and deltas of a short SFT-AG and SFT-MA run on a tiny
Llama, which ``tests/sft/test_golden.py`` requires the current code to reproduce bitwise on CPU.

The recorded numbers were generated from commit b1f33fd (before the memory-layout change:
int64 plan columns, unsorted indices, a per-value Adam age), so that a layout change that
alters arithmetic shows up. Regenerate only for a change that is meant to alter results:
``python tests/sft/golden/make_golden.py`` (from the repository root).

The run: 9 optimizer steps of 2 micro-batches each (gradient accumulation), reselections after
steps 2, 5 and 8 (gamma 2, S 3), density 5% (the MLP matrices take the SDDMM path on one
thread, the attention ones the dense path), one thread so the sums are ordered the same way.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/sft, for conftest

from conftest import tiny_llama, token_batch  # noqa: E402
from sft import SftAdamW, SftConfig, SftSelector, SftSM3, get_sft_model  # noqa: E402

GOLDEN = Path(__file__).with_name("golden.json")
STEPS, MICRO_BATCHES = 9, 2


def _digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:16]


def run(selection: str) -> dict:
    """Per-micro-batch losses (float hex) and, per layer, digests of the dense delta and of
    the dense map of grown_at + 1 (0 = inactive): independent of the order entries are kept."""
    torch.set_num_threads(1)
    config = SftConfig(density=0.05, selection=selection, reselection_steps=3,
                       accumulation_steps=2, seed=0)
    model = get_sft_model(tiny_llama(), config)
    params = model.trainable_parameters_groups
    optimizer = (SftAdamW(params, lr=1e-2, weight_decay=0.1) if selection == "ag"
                 else SftSM3(params, lr=5e-2, weight_decay=0.1))
    selector = SftSelector(model, optimizer, STEPS)
    losses = []
    for step in range(STEPS):
        for micro in range(MICRO_BATCHES):
            ids = token_batch(100 * step + micro)
            loss = model(input_ids=ids, labels=ids).loss
            (loss / MICRO_BATCHES).backward()
            losses.append(float(loss.detach()).hex())
        optimizer.step()
        optimizer.zero_grad()
        selector.step()
    layers = {}
    for name, layer in model.sft_layers():
        grown = torch.zeros(layer.shape, dtype=torch.int32).view(-1)
        grown[layer.indices.long()] = layer.grown_at.int() + 1
        dense = layer.delta_dense()
        layers[name] = {"delta": _digest(dense), "grown_at": _digest(grown),
                        "delta_abs_sum": float(dense.abs().sum()).hex()}
    return {"reselections": int(model.num_reselections), "losses": losses, "layers": layers}


def main() -> None:
    golden = {selection: run(selection) for selection in ("ag", "ma")}
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
