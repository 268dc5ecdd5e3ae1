"""Numerical edge cases found by review, each pinned by a test that failed before its fix:
T == gamma, fp16 loss scaling, 8-bit layers, a tied LM head, overflowing SM3 scores, bf16
rounding of merged versus unmerged weights; and damaged delta files."""
from __future__ import annotations

import contextlib
import math
import signal

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from conftest import Tokens, tiny_llama, token_batch, train_steps
from sft import SftAdamW, SftConfig, SftModel, SftSelector, SftSM3, get_sft_model
from sft.layer import SftLinear
from sft.growth import top_outer_product


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail instead of hanging: a Python-level endless loop gets a TimeoutError."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# 1. T == gamma ----------------------------------------------------------------------------

@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_no_reselection_at_the_last_step_when_it_is_the_first(selection):
    """T == gamma: a reselection after the last step would replace every index by a fresh
    zero delta, and the run would end at the pretrained model."""
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05, selection=selection,
                                                  reselection_steps=4, accumulation_steps=4))
    opt = (SftAdamW if selection == "ag" else SftSM3)(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, 4)
    train_steps(model, opt, selector, range(4))
    assert selector.num_reselections == 0 and not selector.estimating
    for _, layer in model.sft_layers():
        assert bool((layer.values != 0).all()), "the trained deltas were dropped at the end"


# 2. fp16 loss scaling ---------------------------------------------------------------------

def _scaled_run(scaler, steps=3):
    """SFT-AG with gamma = 2: the reselection after step 2 seeds Adam from the phase."""
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05, reselection_steps=3,
                                                  accumulation_steps=2))
    opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, 10, grad_scaler=scaler)
    for seed in range(steps):
        ids = token_batch(seed)
        loss = model(input_ids=ids, labels=ids).loss
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        opt.zero_grad()
        selector.step()
    return model, opt


def test_grad_scaler_does_not_scale_the_seeded_adam_moments():
    """With a GradScaler the estimation phase sees gradients x S; Adam's seeded second moment
    was S^2 too large and grown weights learned far slower than the rest."""
    plain, plain_opt = _scaled_run(None)
    scaled, scaled_opt = _scaled_run(torch.amp.GradScaler("cpu", init_scale=2.0**12))
    for (_, a), (_, b) in zip(plain.sft_layers(), scaled.sft_layers()):
        assert torch.equal(a.indices, b.indices)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(scaled_opt.state[b.values][key],
                                       plain_opt.state[a.values][key], rtol=1e-5, atol=1e-12)


def test_a_skipped_fp16_step_is_not_counted_in_the_estimation_phase():
    """An overflowing step (inf gradients) is skipped by the scaler; the phase must skip it too
    instead of averaging inf into the growth statistics."""
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05, reselection_steps=4,
                                                  accumulation_steps=3))
    opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    selector = SftSelector(model, opt, 10, grad_scaler=scaler)
    for step in range(3):
        ids = token_batch(step)
        loss = model(input_ids=ids, labels=ids).loss
        scaler.scale(loss * (math.inf if step == 1 else 1.0)).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        selector.step()
    assert selector.num_reselections == 1
    for _, layer in model.sft_layers():
        state = opt.state[layer.values]
        assert bool(torch.isfinite(state["exp_avg_sq"]).all())
        assert bool((opt.ages(layer.values) == 2).all())  # two counted steps, the inf one skipped


def test_trainer_with_a_grad_scaler_seeds_like_fp32(tmp_path):
    """The Trainer route: accelerate's wrapped optimizer carries the scaler, and the selector
    finds it there. (CPU accelerate makes no scaler of its own; give it one.)"""
    from transformers import TrainingArguments

    from sft import SftTrainer

    def run(scaler, fp16=False):
        model = get_sft_model(tiny_llama(), SftConfig(density=0.05, reselection_steps=3,
                                                      accumulation_steps=2))
        args = TrainingArguments(str(tmp_path), per_device_train_batch_size=4, max_steps=3,
                                 learning_rate=1e-2, max_grad_norm=0.0, report_to="none",
                                 save_strategy="no", use_cpu=True, fp16=fp16, logging_strategy="no")
        trainer = SftTrainer(model=model, args=args, train_dataset=Tokens(12))
        if scaler is not None:
            trainer.accelerator.scaler = scaler
        trainer.train()
        return model, trainer.optimizer

    plain, plain_opt = run(None)
    scaled, scaled_opt = run(torch.amp.GradScaler("cpu", init_scale=2.0**12))
    half, half_opt = run(torch.amp.GradScaler("cpu", init_scale=2.0**12), fp16=True)
    for (_, a), (_, b), (_, c) in zip(plain.sft_layers(), scaled.sft_layers(), half.sft_layers()):
        expected = plain_opt.state[a.values]["exp_avg_sq"]
        torch.testing.assert_close(scaled_opt.state[b.values]["exp_avg_sq"], expected,
                                   rtol=1e-5, atol=1e-12)
        # fp16 autocast changes the gradients a little, the scale would change them by 2^24
        ratio = half_opt.state[c.values]["exp_avg_sq"].sum() / expected.sum()
        assert 0.5 < float(ratio) < 2.0


# 3. 8-bit layers ---------------------------------------------------------------------------

def test_int8_weights_are_rejected_as_targets():
    model = tiny_llama()
    proj = model.model.layers[0].self_attn.q_proj
    proj.weight = nn.Parameter(torch.zeros_like(proj.weight, dtype=torch.int8), requires_grad=False)
    with pytest.raises(ValueError, match="int8.*model.layers.0.self_attn.q_proj"):
        get_sft_model(model, SftConfig(density=0.05))


def test_bitsandbytes_8bit_layers_are_rejected():
    bnb = pytest.importorskip("bitsandbytes")
    model = tiny_llama()
    old = model.model.layers[0].mlp.up_proj
    layer = bnb.nn.Linear8bitLt(old.in_features, old.out_features, bias=False,
                                has_fp16_weights=False)
    model.model.layers[0].mlp.up_proj = layer  # on CPU its weight is not quantized yet
    with pytest.raises(ValueError, match="8-bit.*model.layers.0.mlp.up_proj"):
        get_sft_model(model, SftConfig(density=0.05))


# 4. a tied LM head ------------------------------------------------------------------------

def test_merging_a_tied_lm_head_leaves_the_input_embedding_alone(tmp_path):
    base = tiny_llama(tied=True)
    embedding = base.get_input_embeddings().weight.detach().clone()
    model = get_sft_model(base, SftConfig(density=0.05, target_modules=["lm_head"]))
    with torch.no_grad():
        for _, layer in model.sft_layers():
            layer.values.normal_()
    ids = token_batch(1)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    merged = model.merge_and_unload()
    assert torch.equal(merged.get_input_embeddings().weight, embedding)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, expected)
    # and it stays untied when saved and loaded as a plain transformers model
    merged.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected)


# 5. SFT-MA scores beyond fp32 --------------------------------------------------------------

def test_top_outer_product_with_overflowing_products_terminates_and_is_right():
    g = torch.Generator().manual_seed(0)
    row, col = torch.rand(40, generator=g) * 1e25, torch.rand(30, generator=g) * 1e25
    excluded = torch.sort(torch.randperm(1200, generator=g)[:100]).values
    with time_limit(30):
        got = torch.sort(top_outer_product(row, col, 50, excluded)).values
    scores = (row.double()[:, None] * col.double()[None, :]).reshape(-1)
    scores[excluded] = -math.inf
    assert torch.equal(got, torch.sort(torch.topk(scores, 50).indices).values)


def test_ma_reselection_with_huge_accumulators_terminates():
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05, selection="ma",
                                                  reselection_steps=2, accumulation_steps=1))
    opt = SftSM3(model.trainable_parameters_groups, lr=1e-3)
    selector = SftSelector(model, opt, 10)
    train_steps(model, opt, selector, range(2))
    for _, layer in model.sft_layers():
        row, col = opt.accumulators(layer.values)
        row.mul_(1e30)
        col.mul_(1e30)
    with time_limit(60):
        train_steps(model, opt, selector, range(2, 4))
    assert selector.num_reselections == 2


# 6. bf16 base, fp32 deltas: merged == unmerged -------------------------------------------

@pytest.mark.parametrize("compute", [torch.bfloat16, torch.float32])
def test_bf16_unmerged_forward_equals_merged_weights(compute):
    """The forward rounded W and delta separately (delta to bf16, then the sum), the merge
    rounds W + delta once: now both round once, so the served model is the evaluated one."""
    torch.manual_seed(0)
    base = nn.Linear(256, 64, bias=True).to(torch.bfloat16).requires_grad_(False)
    layer = SftLinear.with_random_indices(base, 4000, torch.float32, torch.Generator().manual_seed(0))
    with torch.no_grad():  # deltas of about a bf16 ulp of W: where double rounding shows
        layer.values.copy_(torch.randn(4000) * 3e-3)
    merged = (base.weight.float() + layer.delta_dense()).to(torch.bfloat16)
    x = torch.randn(8, 256).to(compute)
    with torch.no_grad():
        expected = nn.functional.linear(x, merged.to(compute), base.bias.to(compute))
        assert torch.equal(layer(x), expected)
    assert torch.equal(layer(x), expected)  # the autograd path too


def test_bf16_model_merged_equals_unmerged():
    model = get_sft_model(tiny_llama(dtype=torch.bfloat16), SftConfig(density=0.2))
    with torch.no_grad():
        for _, layer in model.sft_layers():
            layer.values.copy_(torch.randn_like(layer.values) * 3e-3)
    ids = token_batch(2)
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits
    assert torch.equal(unmerged, merged)


# damaged delta files ---------------------------------------------------------------------

def _saved(tmp_path):
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05))
    model.save_pretrained(tmp_path)
    return tmp_path / "sft_model.safetensors"


def test_float_indices_are_rejected_naming_file_and_tensor(tmp_path):
    path = _saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    key = "model.layers.0.self_attn.q_proj.indices"
    tensors[key] = tensors[key].float() + 0.5  # unique and in range, but truncated on load
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(ValueError, match=f"{path}.*{key}.*float32"):
        SftModel.from_pretrained(tiny_llama(), tmp_path)


def test_truncated_file_error_names_the_path(tmp_path):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(path)):
        SftModel.from_pretrained(tiny_llama(), tmp_path)
    path.write_bytes(data[:5])
    with pytest.raises(ValueError, match=str(path)):
        SftModel.from_pretrained(tiny_llama(), tmp_path)


def _rewrite(path, change):
    """Rewrite a saved SFT file after `change(tensors, metadata)`."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    change(tensors, metadata)
    save_file(tensors, path, metadata=metadata)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_delta_values_are_rejected(tmp_path, bad):
    path = _saved(tmp_path)
    key = "model.layers.1.mlp.down_proj.values"
    _rewrite(path, lambda tensors, _: tensors[key].__setitem__(0, bad))
    with pytest.raises(ValueError, match=f"{path}.*down_proj.values holds NaN or infinite"):
        SftModel.from_pretrained(tiny_llama(), tmp_path)


def test_a_nested_shape_field_is_rejected_naming_file_and_tensor(tmp_path):
    path = _saved(tmp_path)
    key = "model.layers.0.self_attn.q_proj.shape"
    _rewrite(path, lambda tensors, _: tensors.__setitem__(key, tensors[key].reshape(1, 2)))
    with pytest.raises(ValueError, match=f"{path}.*q_proj.shape must hold 2 integers"):
        SftModel.from_pretrained(tiny_llama(), tmp_path)


@pytest.mark.parametrize("value", ["three", "-1", "1e3", "9" * 5000])
def test_a_non_numeric_num_reselections_is_rejected_naming_the_file(tmp_path, value):
    path = _saved(tmp_path)
    _rewrite(path, lambda _, metadata: metadata.__setitem__("num_reselections", value))
    with pytest.raises(ValueError, match=f"{path}.*num_reselections must be a non-negative integer"):
        SftModel.from_pretrained(tiny_llama(), tmp_path)
