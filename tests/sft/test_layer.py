"""SftLinear and its autograd function: exact forward, exact gradients, no change to W."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sft.estimation import CandidateEstimator
from sft.layer import SftLinear, random_subset


def _layer(d_out=24, d_in=16, n=40, bias=True, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out, bias=bias).to(dtype).requires_grad_(False)
    layer = SftLinear.with_random_indices(base, n, torch.float32, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        layer.values.normal_()
    return layer


def _dense_reference(layer, x):
    """W' as a dense leaf so autograd gives the full dW to compare against."""
    w = (layer.base_layer.weight.detach().float() + layer.delta_dense()).requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    out = torch.nn.functional.linear(xr, w, layer.base_layer.bias)
    return out, w, xr


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_dense(bias):
    layer = _layer(bias=bias)
    x = torch.randn(3, 5, 16, requires_grad=True)
    out = layer(x)
    ref, w, xr = _dense_reference(layer, x)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    ref.backward(upstream)
    torch.testing.assert_close(x.grad, xr.grad)
    expected = w.grad.reshape(-1)[layer.indices.long()]
    torch.testing.assert_close(layer.values.grad, expected)
    assert layer.base_layer.weight.grad is None


def test_base_weight_untouched_and_frozen():
    layer = _layer()
    before = layer.base_layer.weight.detach().clone()
    layer(torch.randn(4, 16)).sum().backward()
    assert torch.equal(layer.base_layer.weight, before)
    assert not layer.base_layer.weight.requires_grad


def test_no_copy_of_w_saved_for_backward():
    layer = _layer(d_out=64, d_in=48, n=30)
    x = torch.randn(2, 48, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x)
    w_size = 64 * 48
    assert all(t.numel() != w_size for t in saved), [tuple(t.shape) for t in saved]


def test_estimation_dense_first_then_sparse_candidates():
    layer = _layer(d_out=20, d_in=10, n=15)
    layer.estimator = CandidateEstimator(15, layer.shape, layer.indices.dtype)
    xs = [torch.randn(6, 10) for _ in range(3)]
    dense_sum = torch.zeros(20, 10)
    for i, x in enumerate(xs):
        out = layer(x)
        g = torch.randn_like(out)
        out.backward(g)
        dense = g.t() @ x
        if i == 0:
            top = torch.topk(dense.reshape(-1).abs(), 15).indices
            assert set(layer.estimator.candidates.tolist()) == set(top.tolist())
        dense_sum += dense
    layer.estimator.end_step()
    mean, mean_sq = layer.estimator.moments()
    cand = layer.estimator.candidates.long()
    torch.testing.assert_close(mean, dense_sum.reshape(-1)[cand])
    torch.testing.assert_close(mean_sq, dense_sum.reshape(-1)[cand] ** 2)
    assert mean.dtype == torch.float32 and layer.estimator.num_steps == 1


def test_the_step_gradient_lives_only_within_a_step():
    """Between optimizer steps (where the next backward starts: the peak without gradient
    accumulation) a candidate holds its int32 index, sum and sum of squares: 12 bytes."""
    layer = _layer(d_out=20, d_in=10, n=15)
    layer.estimator = estimator = CandidateEstimator(15, layer.shape, layer.indices.dtype)
    grads = []
    for step in range(3):
        for _ in range(2):  # two micro-batches a step
            x = torch.randn(6, 10)
            out = layer(x)
            g = torch.randn_like(out)
            out.backward(g)
            grads.append((g.t() @ x).reshape(-1))
            assert estimator.state_bytes() == 15 * 16
        estimator.end_step()
        assert estimator.state_bytes() == 15 * 12
    cand = estimator.candidates.long()
    steps = [(grads[2 * i] + grads[2 * i + 1])[cand] for i in range(3)]
    mean, mean_sq = estimator.moments()
    torch.testing.assert_close(mean, sum(steps) / 3)
    torch.testing.assert_close(mean_sq, sum(s * s for s in steps) / 3)


def test_bf16_model_statistics_stay_fp32():
    layer = _layer(dtype=torch.bfloat16)
    layer.values.data = layer.values.data.to(torch.bfloat16)
    layer.estimator = CandidateEstimator(40, layer.shape, layer.indices.dtype)
    for _ in range(300):  # a bf16 counter would saturate at 256
        layer(torch.randn(2, 16, dtype=torch.bfloat16)).sum().backward()
        layer.estimator.end_step()
    assert layer.estimator.num_steps == 300
    assert layer.estimator.grad_sum.dtype == torch.float32
    assert layer.values.grad.dtype == torch.bfloat16


def test_random_subset_unique_sorted_in_range():
    g = torch.Generator().manual_seed(1)
    for numel, count in [(1000, 10), (1000, 400), (50, 50), (10**7, 5000)]:
        s = random_subset(numel, count, g)
        assert s.numel() == count == torch.unique(s).numel()
        assert int(s.min()) >= 0 and int(s.max()) < numel
        assert torch.equal(s, torch.sort(s).values)


def test_delta_applied_in_place_is_merged_weight_and_restores_w_bit_for_bit():
    layer = _layer(d_out=32, d_in=20, n=60)
    weight = layer.base_layer.weight
    before, version = weight.detach().clone(), weight._version
    merged = layer.merged_weight(torch.float32)
    with layer.delta_applied(torch.float32) as patched:
        assert patched.data_ptr() == weight.data_ptr()  # no W-sized copy
        assert torch.equal(patched, merged)
    assert torch.equal(weight, before) and weight._version == version
    with pytest.raises(RuntimeError, match="inside"):
        with layer.delta_applied(torch.float32):
            raise RuntimeError("inside")
    assert torch.equal(weight, before)  # restored on an exception too


@pytest.mark.parametrize("values_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0])
def test_bf16_w_plus_delta_is_summed_in_fp32_and_rounded_once(values_dtype, scale):
    """What the matmuls see is what merge_and_unload stores: fl_bf16(W + Delta) with the sum
    in fp32, whatever the delta's size against W's last place (the patch adds and rounds in
    one kernel; a sum in bf16 would round twice)."""
    layer = _layer(d_out=64, d_in=48, n=1500, dtype=torch.bfloat16)
    with torch.no_grad():
        layer.values.mul_(scale)
    layer.values.data = layer.values.data.to(values_dtype)
    weight = layer.base_layer.weight
    expected = (weight.float() + layer.delta_dense(torch.float32)).to(torch.bfloat16)
    with layer.delta_applied(torch.bfloat16) as patched:
        assert patched.data_ptr() == weight.data_ptr()
        assert torch.equal(patched.view(torch.int16), expected.view(torch.int16))
    assert torch.equal(layer.merged_weight(torch.bfloat16).view(torch.int16), expected.view(torch.int16))


def test_delta_applied_in_another_dtype_builds_a_copy():
    layer = _layer(d_out=16, d_in=12, n=20)
    before = layer.base_layer.weight.detach().clone()
    with layer.delta_applied(torch.float64) as merged:
        assert merged.dtype == torch.float64
        assert merged.data_ptr() != layer.base_layer.weight.data_ptr()
        assert torch.equal(merged, layer.merged_weight(torch.float64))
    assert torch.equal(layer.base_layer.weight, before)


def test_grown_at_is_int16_until_an_iteration_needs_int32():
    """Two bytes per entry for the reselection iteration; an iteration past int16's range
    widens the buffer first, by a single entry or a whole tensor (as load_deltas writes it),
    instead of wrapping around."""
    layer = _layer(n=3)
    assert layer.grown_at.dtype == torch.int16
    layer.set_grown_at(32767, torch.tensor([0]))
    assert layer.grown_at.dtype == torch.int16
    layer.set_grown_at(40000, torch.tensor([1]))
    assert layer.grown_at.dtype == torch.int32 and layer.grown_at.tolist() == [32767, 40000, 0]
    other = _layer(n=3)
    other.set_grown_at(torch.tensor([0, 70000, 3], dtype=torch.int32))
    assert other.grown_at.tolist() == [0, 70000, 3]
    built = SftLinear(nn.Linear(4, 4), torch.tensor([1, 2, 3]), torch.zeros(3),
                      torch.tensor([0, 0, 40000]))
    assert built.grown_at.dtype == torch.int32 and built.grown_at.tolist() == [0, 0, 40000]
