"""SftAdamW and SftSM3 against dense references."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import sft.optim
from sft.layer import SftLinear
from sft.optim import GrowthSeed, SftAdamW, SftSM3, _chunks


def _layer(d_out, d_in, n, seed=0):
    base = nn.Linear(d_in, d_out, bias=False).requires_grad_(False)
    return SftLinear.with_random_indices(base, n, torch.float32, torch.Generator().manual_seed(seed))


def test_adamw_equals_torch_adamw_when_ages_are_equal():
    torch.manual_seed(0)
    ours = nn.Parameter(torch.randn(50))
    theirs = nn.Parameter(ours.detach().clone())
    a = SftAdamW([ours], lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3)
    b = torch.optim.AdamW([theirs], lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3)
    for _ in range(5):
        g = torch.randn(50)
        ours.grad, theirs.grad = g.clone(), g.clone()
        a.step()
        b.step()
    torch.testing.assert_close(ours, theirs)


def test_adamw_bias_correction_uses_each_weights_age():
    p = nn.Parameter(torch.zeros(4))
    opt = SftAdamW([p], lr=0.1, betas=(0.9, 0.999), eps=0.0)
    p.grad = torch.ones(4)
    opt.step()
    opt.step()
    seed = GrowthSeed(torch.tensor([2.0, -1.0]), torch.tensor([4.0, 9.0]), num_steps=5)
    opt.reset_state(p, torch.tensor([1, 3]), seed)
    state = opt.state[p]
    assert opt.ages(p).tolist() == [2, 5, 2, 5]
    before = p.detach().clone()
    g = torch.tensor([1.0, 0.5, 1.0, -2.0])
    p.grad = g
    opt.step()
    for i, (m0, v0, age) in enumerate([(None, None, 3), ((1 - 0.9**5) * 2.0, (1 - 0.999**5) * 4, 6),
                                       (None, None, 3), ((1 - 0.9**5) * -1.0, (1 - 0.999**5) * 9, 6)]):
        if m0 is None:  # an ordinary weight three steps old
            m = sum(0.1 * 0.9 ** (2 - s) * x for s, x in enumerate([1.0, 1.0, g[i].item()]))
            v = sum(0.001 * 0.999 ** (2 - s) * x * x for s, x in enumerate([1.0, 1.0, g[i].item()]))
        else:
            m = 0.9 * m0 + 0.1 * g[i].item()
            v = 0.999 * v0 + 0.001 * g[i].item() ** 2
        update = (m / (1 - 0.9**age)) / (v / (1 - 0.999**age)) ** 0.5
        torch.testing.assert_close(p[i] - before[i], torch.tensor(-0.1 * update))
    opt.reset_state(p, torch.tensor([0]))
    assert opt.ages(p)[0] == 0 and state["exp_avg"][0] == 0 and state["exp_avg_sq"][0] == 0


def test_adamw_ages_from_an_int16_grown_at_and_past_its_range():
    layer = _layer(6, 5, 3)
    assert layer.grown_at.dtype == torch.int16
    opt = SftAdamW([layer.values], lr=1e-2)
    layer.values.grad = torch.ones(3)
    opt.step()
    opt.step()
    opt.reset_state(layer.values, torch.tensor([1]), generation=3)
    assert opt.ages(layer.values).tolist() == [2, 0, 2] and layer.grown_at.dtype == torch.int16
    opt.step()
    opt.reset_state(layer.values, torch.tensor([2]), generation=40000)
    assert layer.grown_at.dtype == torch.int32 and layer.grown_at.tolist() == [0, 3, 40000]
    assert opt.ages(layer.values).tolist() == [3, 1, 0]


def test_adamw_bf16_values_fp32_state():
    p = nn.Parameter(torch.zeros(8, dtype=torch.bfloat16))
    opt = SftAdamW([p], lr=1e-3)
    for _ in range(300):
        p.grad = torch.ones(8, dtype=torch.bfloat16)
        opt.step()
    state = opt.state[p]
    assert state["exp_avg"].dtype == torch.float32 and int(opt.ages(p)[0]) == 300
    assert p.dtype == torch.bfloat16 and float(p.detach()[0]) < -0.25


def _dense_sm3(grads, lr, eps):
    """Textbook SM3-II on a fully dense matrix with running-max accumulators."""
    d_out, d_in = grads[0].shape
    row, col = torch.zeros(d_out), torch.zeros(d_in)
    w = torch.zeros(d_out, d_in)
    for g in grads:
        nu = torch.minimum(row[:, None], col[None, :]) + g * g
        row = torch.maximum(row, nu.max(1).values)
        col = torch.maximum(col, nu.max(0).values)
        w -= lr * g / torch.sqrt(nu + eps)
    return w, row, col


def test_sm3_full_density_equals_dense_sm3():
    layer = _layer(6, 5, 30)
    opt = SftSM3([layer.values], lr=0.05, eps=1e-8)
    grads = [torch.randn(6, 5, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    for g in grads:
        layer.values.grad = g.reshape(-1)[layer.indices.long()].clone()
        opt.step()
    w, row, col = _dense_sm3(grads, 0.05, 1e-8)
    torch.testing.assert_close(layer.delta_dense(), w)
    got_row, got_col = opt.accumulators(layer.values)
    torch.testing.assert_close(got_row, row)
    torch.testing.assert_close(got_col, col)


def test_sm3_sparse_touches_only_active_rows_and_columns():
    layer = _layer(40, 30, 5)
    opt = SftSM3([layer.values], lr=0.1, momentum=0.9)
    layer.values.grad = torch.ones(5)
    opt.step()
    row, col = opt.accumulators(layer.values)
    rows = set((layer.indices // 30).tolist())
    assert set(row.nonzero().squeeze(1).tolist()) == rows
    assert opt.state[layer.values]["momentum_buffer"].shape == (5,)


def test_sm3_works_on_a_deep_copy():
    import copy

    layer = copy.deepcopy(_layer(6, 5, 10))
    assert layer.values.sft_layer is layer
    opt = SftSM3([layer.values], lr=0.1)
    layer.values.grad = torch.ones(10)
    opt.step()
    assert bool((layer.values != 0).all())


def test_optimizer_argument_checks():
    p = nn.Parameter(torch.zeros(3))
    with pytest.raises(TypeError, match="only the 'values'"):
        SftSM3([p])
    with pytest.raises(TypeError):
        SftSM3([_layer(4, 4, 2).values], lr=0.1, betas=(0.9, 0.99))  # no silent **kwargs
    with pytest.raises(ValueError, match="invalid betas"):
        SftAdamW([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="invalid momentum"):
        SftSM3([_layer(4, 4, 2).values], momentum=1.0)


def test_state_dict_roundtrip_keeps_fp32_moments_and_int_ages_for_bf16_values():
    p = nn.Parameter(torch.zeros(6, dtype=torch.bfloat16))
    opt = SftAdamW([p], lr=1e-3)
    for _ in range(3):
        p.grad = torch.full((6,), 1e-3, dtype=torch.bfloat16)
        opt.step()
    q = nn.Parameter(p.detach().clone())
    restored = SftAdamW([q], lr=1e-3)
    restored.load_state_dict(opt.state_dict())
    state = restored.state[q]
    assert state["exp_avg"].dtype == torch.float32 and state["birth"].dtype == torch.int32
    assert torch.equal(restored.ages(q), opt.ages(p)) and restored.ages(q).dtype == torch.int32
    torch.testing.assert_close(state["exp_avg"], opt.state[p]["exp_avg"], rtol=0, atol=0)


def test_step_chunks_are_bounded_and_each_on_one_device(monkeypatch):
    """The steps concatenate a chunk's tensors, so a model split over devices (device_map)
    gets a chunk per device."""
    monkeypatch.setattr(sft.optim, "STEP_CHUNK_ENTRIES", 10)
    a, b, c, d = torch.zeros(6), torch.zeros(6, device="meta"), torch.zeros(3), torch.zeros(12)
    e = torch.zeros(2, device="meta")
    runs = _chunks([a, b, c, d, e])
    assert [[id(t) for t in run] for run in runs] == [[id(a), id(c)], [id(d)], [id(b), id(e)]]
