"""qSFT: NF4 (double-quantized) frozen weights via bitsandbytes, bf16 deltas; train, save, load
and evaluate without merging."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_llama, token_batch
from sft import SftAdamW, SftConfig, SftModel, SftSelector, get_sft_model
from sft.targets import find_target_linears

bnb = pytest.importorskip("bitsandbytes")


def quantized_llama():
    """A tiny Llama whose block linears are NF4 with double quantization (as in qLoRA)."""
    model = tiny_llama()
    for name, linear in list(find_target_linears(model)):
        q = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                              compute_dtype=torch.bfloat16, quant_type="nf4")
        q.weight = bnb.nn.Params4bit(linear.weight.data.clone(), requires_grad=False,
                                     quant_type="nf4", compress_statistics=True)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, q.to("cpu"))
    return model


def test_qsft_forward_is_dequantized_weight_plus_delta():
    model = get_sft_model(quantized_llama(), SftConfig(density=0.05, delta_dtype="bfloat16"))
    name, layer = next(iter(model.sft_layers()))
    assert type(layer.base_layer.weight).__name__ == "Params4bit"
    assert layer.values.dtype == torch.bfloat16
    with torch.no_grad():
        layer.values.normal_()
    w = bnb.functional.dequantize_4bit(layer.base_layer.weight.data,
                                       layer.base_layer.weight.quant_state)
    w.view(-1)[layer.indices.long()] += layer.values.float()
    x = torch.randn(3, 64, requires_grad=True)
    out = layer(x)
    torch.testing.assert_close(out, x @ w.t())
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3, w.shape[0]) @ w)
    assert layer.values.grad.dtype == torch.bfloat16


def test_qsft_train_save_load_evaluate_without_merge(tmp_path):
    model = get_sft_model(quantized_llama(), SftConfig(density=0.05, delta_dtype="bfloat16",
                                                       reselection_steps=3, accumulation_steps=1))
    opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, 10)
    losses = []
    ids = token_batch(0)
    for _ in range(5):
        loss = model(input_ids=ids, labels=ids).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
        selector.step()
    assert selector.num_reselections == 2 and losses[-1] < losses[0]
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    loaded = SftModel.from_pretrained(quantized_llama(), tmp_path)
    assert all(layer.values.dtype == torch.bfloat16 for _, layer in loaded.sft_layers())
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)
    assert all(type(layer.base_layer.weight).__name__ == "Params4bit" for _, layer in loaded.sft_layers())
