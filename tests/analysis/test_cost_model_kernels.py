"""The kernel counts the cost model prices for the compact layout (analysis/cost_model/layout.py)
are the library's own: every operation that launches a kernel (views launch none), counted with
a TorchDispatchMode on small layers. On a GPU each costs a launch and its Python, so a count
that drifts from the code misprices the step (issue 21)."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from analysis.cost_model.layout import STEP_CHUNK_ENTRIES, layout
from sft.kernels import DENSE, make_plan
from sft.layer import SftLinear
from sft.optim import STEP_CHUNK_ENTRIES as LIBRARY_CHUNK, SftAdamW, SftSM3

COMPACT = layout("compact")
# Operations that launch no kernel: views, allocations, and the profiler's markers.
NO_KERNEL = {"empty", "empty_like", "empty_strided", "view", "_unsafe_view", "t", "detach", "alias", "as_strided", "expand", "slice",
             "select", "split", "split_with_sizes", "unbind", "transpose", "unsqueeze",
             "squeeze", "permute", "reshape", "_record_function_enter_new",
             "_record_function_exit"}


class _Kernels(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in NO_KERNEL:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def _layers(shapes, dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    return [SftLinear.with_random_indices(nn.Linear(d_in, d_out, bias=False).to(dtype).requires_grad_(False),
                                          40, torch.float32, generator)
            for d_out, d_in in shapes]


def _step_kernels(optimizer_cls, layers, **kwargs) -> int:
    """Kernels of a steady-state step (the state made by a first step)."""
    optimizer = optimizer_cls([layer.values for layer in layers], lr=1e-3, **kwargs)
    for _ in range(2):
        for layer in layers:
            layer.values.grad = torch.randn(layer.num_active).to(layer.values.dtype)
        with _Kernels() as counted:
            optimizer.step()
    return sum(counted.ops.values())


def test_the_chunk_size_is_the_librarys():
    assert STEP_CHUNK_ENTRIES == LIBRARY_CHUNK


def test_sft_layer_kernels_beyond_its_matmuls():
    """bf16 weights and input, fp32 values, the dense delta-gradient path (the dispatcher's
    choice on CUDA at bf16): the forward and backward launch the layout's counts besides the
    frozen matmul, the input-gradient matmul and dW's GEMM."""
    layer = _layers([(32, 64)], torch.bfloat16)[0]
    layer._plan = make_plan(layer.indices, layer.shape, method=DENSE)
    x = torch.randn(8, 64, dtype=torch.bfloat16, requires_grad=True)
    with _Kernels() as forward:
        out = layer(x)
    grad_out = torch.randn_like(out)
    with _Kernels() as backward:
        out.backward(grad_out)
    assert layer.values.grad is not None
    assert sum(forward.ops.values()) - forward.ops["mm"] == COMPACT.forward_ops
    assert backward.ops["mm"] == 2
    assert sum(backward.ops.values()) - backward.ops["mm"] == COMPACT.backward_ops


@pytest.mark.parametrize("shapes", [[(32, 64)], [(32, 64)] * 3, [(32, 64), (64, 32), (48, 16)]])
def test_sft_adamw_kernels_per_step_do_not_grow_with_the_layers(shapes):
    assert _step_kernels(SftAdamW, _layers(shapes)) == COMPACT.adamw_ops_per_chunk
    assert _step_kernels(SftAdamW, _layers(shapes), weight_decay=0.1) == COMPACT.adamw_ops_per_chunk + 1


@pytest.mark.parametrize("shapes", [[(32, 64)], [(32, 64)] * 3, [(32, 64), (64, 32)],
                                    [(32, 64), (64, 32), (48, 16), (64, 32)]])
def test_sft_sm3_kernels_per_step_grow_with_the_shapes_not_the_layers(shapes):
    expected = COMPACT.sm3_ops_per_chunk + len(set(shapes)) * COMPACT.sm3_ops_per_shape
    assert _step_kernels(SftSM3, _layers(shapes)) == expected


@pytest.mark.parametrize("optimizer_cls", [SftAdamW, SftSM3])
def test_bf16_values_cost_a_fixed_few_kernels_more_not_a_cast_per_layer(optimizer_cls):
    """qSFT's bf16 deltas: gradients and values cast to fp32 once for the chunk, and the
    result rounded back with one multi-tensor copy."""
    def kernels(shapes, dtype):
        layers = _layers(shapes)
        for layer in layers:
            layer.values.data = layer.values.data.to(dtype)
        return _step_kernels(optimizer_cls, layers)

    one, three = [(32, 64)], [(32, 64)] * 3
    extra = kernels(one, torch.bfloat16) - kernels(one, torch.float32)
    assert extra == kernels(three, torch.bfloat16) - kernels(three, torch.float32)
    assert extra == COMPACT.bf16_values_ops_per_chunk
