"""sft.rebuild: an SFT layer's input rebuilt in the backward instead of saved, with the same
gradients bit for bit, one rebuild per block input, and nothing kept beyond the graph."""
from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from sft import SftConfig, get_sft_model, lora_equivalent_budget
from sft.layer import SftLinear
from sft.rebuild import input_rebuilder
from conftest import tiny_llama, token_batch


def _sft_llama(dtype, checkpointing: str | None = None):
    model = tiny_llama(dtype=dtype)
    model = get_sft_model(model, SftConfig(num_tunable_weights=lora_equivalent_budget(model, 4),
                                           selection="ma"))
    for layer in _layers(model):
        with torch.no_grad():
            layer.values.normal_(0, 0.02)
    if checkpointing:
        model.base_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": checkpointing == "reentrant"})
        model.base_model.enable_input_require_grads()
    return model.train()


def _layers(model):
    return [m for m in model.modules() if isinstance(m, SftLinear)]


def _gradients(model) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    ids = token_batch(3)
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _without_rebuild(monkeypatch):
    monkeypatch.setattr(SftLinear, "input_rebuilder", lambda self, x: None)


@pytest.mark.parametrize("checkpointing", [None, "reentrant", "non-reentrant"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_are_bitwise_those_of_the_saved_input(dtype, checkpointing, monkeypatch):
    model = _sft_llama(dtype, checkpointing)
    rebuilt = _gradients(model)
    checked = [layer._rebuild_checked for layer in _layers(model)]
    with monkeypatch.context() as patch:
        _without_rebuild(patch)
        saved = _gradients(model)
    assert rebuilt.keys() == saved.keys() and len(saved) == 14
    for name in saved:
        assert torch.equal(rebuilt[name], saved[name]), name
    # Every projection but o_proj (the attention output) rebuilt its input, checked once; so did
    # the first block's q/k/v where the embeddings' output requires grad (checkpointing). Under
    # non-reentrant checkpointing its saved-tensor hooks own what is saved: no rebuild.
    trusted = [all(c.values()) and len(c) == 1 for c in checked]
    first_qkv = [checkpointing is not None] * 3
    expected = first_qkv + [False] + [True] * 3 + [True] * 3 + [False] + [True] * 3
    assert trusted == ([False] * 14 if checkpointing == "non-reentrant" else expected)


def test_the_rebuilt_inputs_are_not_saved():
    """In bf16 (casts in the norm), the layers that rebuild their input save only their values
    and indices; the byte-exact inventory is tests/analysis/test_cost_model_autograd.py's."""
    model = _sft_llama(torch.bfloat16)
    ids = token_batch(3)
    loss = model(input_ids=ids, labels=ids).loss
    saved = [len(_sft_node(loss, layer).saved_tensors) for layer in _layers(model)]
    assert saved == [3] * 4 + [2] * 3 + [2] * 3 + [3] + [2] * 3


def test_layers_fed_one_tensor_share_one_rebuild_released_by_the_producer():
    torch.manual_seed(0)
    weight = torch.randn(8)
    h = torch.randn(5, 8, requires_grad=True)
    x = weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6))
    first, second = input_rebuilder(x), input_rebuilder(x)
    assert first is not None and first is second
    calls = []
    replay = first.replay
    first.replay = lambda: calls.append(1) or replay()
    values = [first(), second()]
    assert len(calls) == 1 and values[0] is values[1] and torch.equal(values[0], x)
    x.sum().backward()  # the producer's backward starts: the shared result goes
    assert first.value is None


def test_an_input_no_rule_replays_is_saved():
    layer = SftLinear.with_random_indices(nn.Linear(6, 4).requires_grad_(False), 5, torch.float32,
                                          torch.Generator().manual_seed(0))
    x = torch.randn(3, 6, requires_grad=True).sin()
    assert input_rebuilder(x) is None
    out = layer(x)
    assert len(out.grad_fn.saved_tensors) == 3  # x, values, indices


def test_a_rebuild_that_differs_is_not_trusted():
    """A cast's target dtype is not recorded on its node: bf16 * fp16 promotes to fp32, so the
    replay casts to fp32 and loses the fp16 rounding; the check catches it and x is saved."""
    layer = SftLinear.with_random_indices(nn.Linear(6, 4).requires_grad_(False), 5, torch.float32,
                                          torch.Generator().manual_seed(0))
    weight = torch.randn(6).to(torch.bfloat16)
    h = torch.randn(3, 6, requires_grad=True)
    x = weight * (h * 1.001).mul(h).to(torch.float16)
    assert x.dtype == torch.float32 and input_rebuilder(x) is not None
    out = layer(x)
    assert list(layer._rebuild_checked.values()) == [False]
    assert len(out.grad_fn.saved_tensors) == 3


def test_a_forward_without_backward_keeps_nothing_alive():
    model = _sft_llama(torch.float32)
    ids = token_batch(3)
    loss = model(input_ids=ids, labels=ids).loss
    gate = model.base_model.model.layers[1].mlp.gate_proj
    rebuilder = weakref.ref(_sft_node(loss, gate).rebuild_x)
    del loss
    gc.collect()
    assert rebuilder() is None


def _sft_node(loss, layer):
    """``layer``'s autograd node in the graph behind ``loss``."""
    stack, seen = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if getattr(node, "layer", None) is layer:
            return node
        stack.extend(next_node for next_node, _ in node.next_functions)
    raise AssertionError(f"no node of {layer} behind the loss")


def test_an_input_whose_graph_already_ran_backward_is_saved():
    h = torch.randn(3, 6, requires_grad=True)
    x = h.sin() * h.cos()
    x.sum().backward()  # frees the product's saved operands
    assert input_rebuilder(x) is None
