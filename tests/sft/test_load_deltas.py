"""SftModel.load_deltas: saved deltas go back into the live model in place (resuming a run whose
optimizer already holds the `values` tensors), and bad checkpoints change nothing."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import tiny_llama, token_batch, train_steps
from sft import SftAdamW, SftConfig, SftSelector, get_sft_model

CONFIG = SftConfig(density=0.05, reselection_steps=2, accumulation_steps=1)


def _trained(steps=4):
    """Reselections after steps 1 and 3: the index sets differ from the random initial ones."""
    model = get_sft_model(tiny_llama(), CONFIG)
    opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, 10)
    train_steps(model, opt, selector, range(steps))
    return model


def _grads(model):
    ids = token_batch(99)
    model(input_ids=ids, labels=ids).loss.backward()
    return [layer.values.grad.clone() for _, layer in model.sft_layers()]


def test_load_deltas_restores_in_place(tmp_path):
    trained = _trained()
    trained.save_pretrained(tmp_path)
    fresh = get_sft_model(tiny_llama(), CONFIG)
    values_before = [layer.values for _, layer in fresh.sft_layers()]
    _grads(fresh)  # builds the kernel plans for the random initial indices
    fresh.zero_grad()
    assert not all(torch.equal(a.indices, b.indices)
                   for (_, a), (_, b) in zip(trained.sft_layers(), fresh.sft_layers()))

    fresh.load_deltas(tmp_path)

    assert fresh.num_reselections == trained.num_reselections == 2
    for (_, a), (_, b), values in zip(trained.sft_layers(), fresh.sft_layers(), values_before):
        assert b.values is values  # the optimizer's references stay valid
        assert torch.equal(a.indices, b.indices) and torch.equal(a.grown_at, b.grown_at)
        assert torch.equal(a.values, b.values)
    # Gradients at the restored indices, not at stale cached kernel plans (a stale plan gives
    # other entries' gradients, off by their own size). The SDDMM path, which the tiny MLP
    # layers take on one thread, can differ in the last bit between two models fed the same
    # inputs, hence a tolerance far below any gradient's size rather than bitwise equality.
    for a, b in zip(_grads(trained), _grads(fresh)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_load_deltas_refuses_another_config_and_changes_nothing(tmp_path):
    _trained().save_pretrained(tmp_path)
    other = get_sft_model(tiny_llama(), SftConfig(density=0.05, reselection_steps=3,
                                                  accumulation_steps=1))
    indices = [layer.indices.clone() for _, layer in other.sft_layers()]
    with pytest.raises(ValueError, match="sft_config.json.*reselection_steps=2"):
        other.load_deltas(tmp_path)
    assert all(torch.equal(i, layer.indices) for i, (_, layer) in zip(indices, other.sft_layers()))


def test_load_deltas_refuses_other_layers_or_sizes(tmp_path):
    get_sft_model(tiny_llama(layers=1), CONFIG).save_pretrained(tmp_path)
    model = get_sft_model(tiny_llama(), CONFIG)
    with pytest.raises(ValueError, match="layers differ.*layers.1"):
        model.load_deltas(tmp_path)

    _trained().save_pretrained(tmp_path)
    path = tmp_path / "sft_model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    name = next(name for name, _ in model.sft_layers())
    for field in ("indices", "values", "grown_at"):
        tensors[f"{name}.{field}"] = tensors[f"{name}.{field}"][:-1]
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ValueError, match=f"{name} has"):
        model.load_deltas(tmp_path)
