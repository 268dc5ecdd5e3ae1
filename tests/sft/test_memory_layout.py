"""Exact accounting of what SpIEL keeps per tuned entry: every tensor reachable from the SFT
layers (outside the frozen base layer), the optimizer's state and the selector, found by
walking their attributes generically (so a newly added tensor is counted) and deduplicated by
storage."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from conftest import tiny_llama, token_batch
from sft import SftAdamW, SftConfig, SftSelector, SftSM3, get_sft_model

# Allowed beyond the per-entry bytes, per matrix: SM3's row and column accumulators (fp32,
# d_out + d_in), the SDDMM plan's CSR row pointer (int32, d_out + 1) and Adam's birth table
# (one int32 per reselection so far).
def _per_matrix_allowance(layer, reselections: int) -> int:
    d_out, d_in = layer.shape
    return 4 * (d_out + d_in) + 4 * (d_out + 1) + 4 * (reselections + 1)


def _tensors(root, skip: tuple, found: dict, seen: dict) -> None:
    """Every tensor reachable from ``root`` through attributes, containers and dataclasses,
    keyed by storage, not entering the objects in ``skip``. ``seen`` maps id -> object and so
    keeps the visited objects alive: a freed temporary's id could be reused."""
    if id(root) in seen or any(root is s for s in skip):
        return
    seen[id(root)] = root
    if isinstance(root, torch.Tensor):
        if root.layout != torch.strided:  # a sparse tensor: its component tensors
            parts = ((root.crow_indices(), root.col_indices(), root.values())
                     if root.layout == torch.sparse_csr else (root._indices(), root._values()))
            for part in parts:
                _tensors(part, skip, found, seen)
            return
        storage = root.untyped_storage()
        found[storage.data_ptr()] = storage.nbytes()
        if root.grad is not None:
            _tensors(root.grad, skip, found, seen)
        return
    if isinstance(root, dict):
        children = list(root.keys()) + list(root.values())
    elif isinstance(root, (list, tuple, set, frozenset)):
        children = list(root)
    elif isinstance(root, nn.Module):
        children = [root._parameters, root._buffers, root._modules,
                    {k: v for k, v in vars(root).items() if not k.startswith("_")},
                    getattr(root, "_plan", None)]
    elif dataclasses.is_dataclass(root) and not isinstance(root, type):
        children = [getattr(root, f.name) for f in dataclasses.fields(root)]
    elif hasattr(root, "__dict__") and not isinstance(root, type):
        children = list(vars(root).values())
    else:
        return
    for child in children:
        _tensors(child, skip, found, seen)


def sft_bytes(model, optimizer, selector) -> int:
    """Bytes of every distinct storage the SFT layers, the optimizer and the selector hold."""
    layers = [layer for _, layer in model.sft_layers()]
    skip = tuple(layer.base_layer for layer in layers) + (model, optimizer)
    found, seen = {}, {}
    for layer in layers:
        _tensors(layer, skip, found, seen)
    _tensors(optimizer.state, skip, found, seen)
    _tensors(selector, skip, found, seen)
    return sum(found.values())


def _train(selection: str, steps: int):
    config = SftConfig(density=0.05, selection=selection, reselection_steps=3,
                       accumulation_steps=2)
    model = get_sft_model(tiny_llama(), config)
    optimizer = (SftAdamW if selection == "ag" else SftSM3)(model.trainable_parameters_groups,
                                                           lr=1e-2)
    selector = SftSelector(model, optimizer, 20)
    for step in range(steps):
        for micro in range(2):  # gradient accumulation
            ids = token_batch(10 * step + micro)
            (model(input_ids=ids, labels=ids).loss / 2).backward()
        optimizer.step()
        optimizer.zero_grad()
        selector.step()
    return model, optimizer, selector


@pytest.mark.parametrize("selection,per_entry", [("ag", 18), ("ma", 10)])
def test_bytes_per_tuned_entry_at_rest(selection, per_entry):
    """After two reselections and a step, gradients freed: value, int32 index, one int16 age
    counter, and Adam's two moments (SFT-AG); nothing else per entry."""
    model, optimizer, selector = _train(selection, steps=5)  # reselections after steps 2, 5
    assert selector.num_reselections == 2 and not selector.estimating
    layers = [layer for _, layer in model.sft_layers()]
    entries = sum(layer.num_active for layer in layers)
    allowance = sum(_per_matrix_allowance(layer, 2) for layer in layers)
    total = sft_bytes(model, optimizer, selector)
    assert total <= per_entry * entries + allowance
    # ... and not far below either: the walk does see the per-entry state.
    assert total >= per_entry * entries
    for layer in layers:  # the kernels need no stored permutation: indices stay sorted
        assert layer.indices.dtype == torch.int32 and layer.grown_at.dtype == torch.int16
        assert bool((layer.indices[1:] > layer.indices[:-1]).all())


def test_estimation_phase_bytes_per_candidate():
    """Mid estimation phase (between optimizer steps): per candidate an int32 index and fp32
    gradient sum and sum of squares: 12 bytes, plus the O(d_out) plan (the current step's
    gradient exists only within a step)."""
    model, optimizer, selector = _train("ag", steps=7)  # phase for the reselection at 8
    assert selector.estimating
    layers = [layer for _, layer in model.sft_layers()]
    entries = sum(layer.num_active for layer in layers)
    candidates = sum(layer.estimator.num_candidates for layer in layers)
    allowance = sum(2 * _per_matrix_allowance(layer, 2) for layer in layers)
    total = sft_bytes(model, optimizer, selector)
    assert total <= 18 * entries + 12 * candidates + allowance
    assert total >= 18 * entries + 12 * candidates
