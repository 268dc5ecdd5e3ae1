"""SftModel: save/load (safetensors, no pickle), composition, merge, unload, counts, memory."""
from __future__ import annotations


import pytest
import torch
from safetensors import safe_open

from conftest import tiny_llama, token_batch, train_steps
from sft import SftAdamW, SftConfig, SftModel, SftSelector, SftSM3, get_sft_model


def _trained(seed=0, steps=4, selection="ag", density=0.05):
    model = get_sft_model(tiny_llama(), SftConfig(density=density, selection=selection,
                                                  reselection_steps=3, accumulation_steps=1,
                                                  seed=seed))
    opt = (SftAdamW if selection == "ag" else SftSM3)(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, 20)
    train_steps(model, opt, selector, range(seed * 100, seed * 100 + steps))
    return model


def test_save_load_roundtrip(tmp_path):
    model = _trained()
    ids = token_batch(7)
    expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "sft_config.json",
                                                           "sft_model.safetensors"]
    with safe_open(str(tmp_path / "sft_model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata()["num_reselections"] == "2"
    name = "model.layers.1.mlp.down_proj"
    assert {f"{name}.{k}" for k in ("indices", "values", "grown_at", "shape")} <= keys
    loaded = SftModel.from_pretrained(tiny_llama(), tmp_path)
    assert torch.equal(loaded(input_ids=ids).logits, expected)
    assert loaded.sft_config == model.sft_config and loaded.num_reselections == 2
    for (_, a), (_, b) in zip(model.sft_layers(), loaded.sft_layers()):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.grown_at, b.grown_at)
        assert not b.values.requires_grad
    trainable = SftModel.from_pretrained(tiny_llama(), tmp_path, is_trainable=True)
    assert all(layer.values.requires_grad for _, layer in trainable.sft_layers())


def test_load_rejects_mismatched_base(tmp_path):
    _trained().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="sft_model.safetensors.*shape is"):
        SftModel.from_pretrained(tiny_llama(hidden=32, intermediate=64), tmp_path)
    with pytest.raises(ValueError, match="names no module"):
        SftModel.from_pretrained(tiny_llama(layers=1), tmp_path)


def test_composition_is_additive(tmp_path):
    first, second = _trained(seed=1), _trained(seed=2)
    first.save_pretrained(tmp_path / "a")
    second.save_pretrained(tmp_path / "b")
    composed = SftModel.from_pretrained(tiny_llama(), [tmp_path / "a", tmp_path / "b"])
    base = tiny_llama()
    for name, layer in composed.sft_layers():
        expected = (base.get_submodule(name).weight + first.get_submodule("base_model." + name)
                    .delta_dense() + second.get_submodule("base_model." + name).delta_dense())
        torch.testing.assert_close(layer.merged_weight(torch.float32), expected)
    with pytest.raises(ValueError, match="cannot be loaded trainable"):
        SftModel.from_pretrained(tiny_llama(), [tmp_path / "a", tmp_path / "b"], is_trainable=True)


def test_composing_sfts_of_different_base_models_is_refused(tmp_path):
    """Same shapes, different bases: their deltas are differences to different weights."""
    _trained(seed=1).save_pretrained(tmp_path / "a", base_model_name_or_path="org/base-v1")
    _trained(seed=2).save_pretrained(tmp_path / "b", base_model_name_or_path="org/base-v2")
    with pytest.raises(ValueError, match="different base models.*org/base-v1.*org/base-v2"):
        SftModel.from_pretrained(tiny_llama(), [tmp_path / "a", tmp_path / "b"])
    composed = SftModel.from_pretrained(tiny_llama(), [tmp_path / "a", tmp_path / "b"],
                                        allow_different_bases=True)
    assert len(list(composed.sft_layers())) > 0
    _trained(seed=2).save_pretrained(tmp_path / "c", base_model_name_or_path="org/base-v1")
    SftModel.from_pretrained(tiny_llama(), [tmp_path / "a", tmp_path / "c"])


def test_merge_and_unload():
    model = _trained()
    ids = token_batch(3)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    merged = model.merge_and_unload()
    assert not any(type(m).__name__ == "SftLinear" for m in merged.modules())
    torch.testing.assert_close(merged(input_ids=ids).logits, expected)

    fresh = _trained()
    unloaded = fresh.unload()
    torch.testing.assert_close(unloaded(input_ids=ids).logits, tiny_llama()(input_ids=ids).logits)


def test_trainable_parameter_counts(capsys):
    model = get_sft_model(tiny_llama(), SftConfig(num_tunable_weights=3000))
    trainable, total = model.get_nb_trainable_parameters()
    base_total = sum(p.numel() for p in tiny_llama().parameters())
    assert trainable == 3000 and total == base_total + 3000
    assert [p for p in model.parameters() if p.requires_grad] == \
        model.trainable_parameters_groups[0]["params"]
    model.print_trainable_parameters()
    assert "trainable params: 3,000 || all params:" in capsys.readouterr().out


def test_refuses_to_wrap_twice():
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05))
    with pytest.raises(ValueError, match="already carries sparse deltas"):
        get_sft_model(model.base_model, SftConfig(density=0.05))


def test_attribute_forwarding_and_generate():
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05))
    assert model.config.hidden_size == 64
    out = model.generate(input_ids=token_batch(0, batch=1, length=4), max_new_tokens=3,
                         do_sample=False)
    assert out.shape == (1, 7)


def _state_bytes(selection, hidden, intermediate):
    model = get_sft_model(tiny_llama(hidden=hidden, intermediate=intermediate),
                          SftConfig(num_tunable_weights=4000, selection=selection,
                                    reselection_steps=4, accumulation_steps=2))
    opt = (SftAdamW if selection == "ag" else SftSM3)(model.trainable_parameters_groups, lr=1e-3)
    selector = SftSelector(model, opt, 10)
    ids = token_batch(0)
    model(input_ids=ids, labels=ids).loss.backward()  # mid estimation phase: stats exist
    opt.step()
    opt.zero_grad()
    selector.step()
    assert selector.estimating == (selection == "ag")
    optimizer_bytes = sum(t.numel() * t.element_size() for s in opt.state.values()
                          for t in s.values() if torch.is_tensor(t))
    rows_and_cols = sum(sum(layer.shape) for _, layer in model.sft_layers()) * 4
    return model.sft_state_bytes() + optimizer_bytes, rows_and_cols


@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_memory_scales_with_d_phi_not_d_theta(selection):
    """Same d_phi on a model with 4x the weights per matrix: identical SFT state bytes, apart
    from SM3's row and column vectors."""
    small, small_rc = _state_bytes(selection, 32, 64)
    large, large_rc = _state_bytes(selection, 64, 128)
    if selection == "ag":
        assert small == large
        # indices int32 + values fp32 + grown_at int16 (Adam's ages derive from it) + Adam
        # (m, v) + estimator between steps (index, sum, sum of squares: 3 x 4 per candidate, K
        # = d_phi); plus Adam's one-entry birth table per matrix
        matrices = sum(1 for _ in get_sft_model(tiny_llama(), SftConfig(density=0.01)).sft_layers())
        assert small == 4000 * (4 + 4 + 2 + 8 + 12) + 4 * matrices
    else:
        assert small - small_rc == large - large_rc == 4000 * 10


def test_import_needs_neither_transformers_nor_bitsandbytes():
    import subprocess
    import sys

    code = ("import sys, sft; bad = [m for m in ('transformers', 'bitsandbytes', 'peft') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gradient_checkpointing_gives_the_same_selection():
    def indices_after_training(checkpointing):
        model = get_sft_model(tiny_llama(), SftConfig(density=0.05, reselection_steps=3,
                                                      accumulation_steps=2))
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
        selector = SftSelector(model, opt, 10)
        for step in range(6):
            ids = token_batch(step)
            model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
            opt.step()
            opt.zero_grad()
            selector.step()
        return [layer.indices.clone() for _, layer in model.sft_layers()]

    for a, b in zip(indices_after_training(False), indices_after_training(True)):
        assert torch.equal(a, b)
