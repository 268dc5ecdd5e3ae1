"""Gradient of the active deltas of one sparse-delta linear layer (paper, Appendix B).

For ``Y = X (W + Delta)^T`` the gradient of the active entry ``(r, c)`` of ``Delta`` is
``dY[:, r] . X[:, c]``: a sampled dense-dense matmul (SDDMM) costing ``b * N`` FLOPs instead of
the ``b * d_in * d_out`` of the dense ``dW = dY^T X``. Which of the two is faster depends on
the density and the shape, so :func:`make_plan` decides once per index set (the index set
changes only every S reselection steps) and caches what the chosen path needs (the CSR mask
and the permutation back to the caller's index order). :func:`delta_grad` then only runs it.

Written by hand because no library exposes "dense product sampled at flat indices, in the
caller's order"; the sparse product itself is ``torch.sparse.sampled_addmm``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

SDDMM = "sddmm"
DENSE = "dense"
EMPTY = "empty"
METHODS = (SDDMM, DENSE, EMPTY)

# CPU cost model, in units of one multiply-add of the dense dW GEMM, per token: a least-squares
# fit to `python -m bench.kernels --shapes smollm2 llama` at 1 and 2 threads on a quiet machine,
# densities 0.3-50% (docs/benchmarks.md, section 1). The SDDMM pays for transposing X and dY
# into feature-major layout (per feature), which runs on one thread whatever the thread count,
# while the dense GEMM and the SDDMM's dot products (one per active entry) both scale with the
# threads: relative to the GEMM the transposes cost CPU_TRANSPOSE_COST per feature per thread.
# The crossover this gives is at 25-35% density at 2 threads on SmolLM2-135M and Llama shapes.
CPU_TRANSPOSE_COST = 37.0
CPU_DOT_COST = 2.45

# On CPU the SDDMM runs over chunks of this many tokens so that the transposed chunks of X and
# dY stay in cache between the copy and the dot products (about 25% less CPU time than one
# call). Each chunk is 3 multi-threaded ops, which cost extra on an oversubscribed machine;
# `python -m bench.kernels --token-chunks ...` compares sizes.
TOKEN_CHUNK = 256

# sampled_addmm computes in fp32/fp64 only on CPU; other dtypes go through fp32.
_SDDMM_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True, eq=False)
class DeltaGradPlan:
    """Everything :func:`delta_grad` needs for one index set, built once by :func:`make_plan`.

    ``method`` is the dispatch decision. For ``"sddmm"``, ``mask`` is a CSR tensor whose
    values are unused and ``order`` maps CSR position -> caller position (``None`` when the
    caller's indices are already sorted). For ``"dense"``, ``flat_indices`` gathers from the
    flattened dense gradient. ``source`` and ``source_version`` identify the index tensor the
    plan was built from, so :func:`plan_for` can reuse it until the indices change.
    """

    shape: tuple[int, int]
    num_indices: int
    method: str
    mask: Tensor | None
    order: Tensor | None
    flat_indices: Tensor | None
    source: Tensor
    source_version: int

    @property
    def density(self) -> float:
        return self.num_indices / (self.shape[0] * self.shape[1])

    def matches(self, indices: Tensor, shape: tuple[int, int]) -> bool:
        """True when ``indices`` is the very tensor this plan was built from, unmodified."""
        return (
            indices is self.source
            and indices._version == self.source_version
            and tuple(shape) == self.shape
        )


def choose_method(
    num_indices: int, shape: tuple[int, int], device: torch.device, threads: int | None = None
) -> str:
    """The dispatch rule: the faster path for this many active entries in a W of ``shape``.

    On CPU a cost model measured on this kind of machine decides, for ``threads`` intra-op
    threads (default: torch's current setting); on other devices (CUDA) the two paths are
    timed once per shape and count (:func:`calibrated_method`), since their speed ratio there
    is nothing like the CPU's.
    """
    if num_indices == 0:
        return EMPTY
    device = torch.device(device)
    if device.type != "cpu":
        return calibrated_method(num_indices, shape, device)
    d_out, d_in = shape
    threads = torch.get_num_threads() if threads is None else threads
    transposes = CPU_TRANSPOSE_COST * max(1, threads) * (d_in + d_out)
    sddmm_cost = transposes + CPU_DOT_COST * num_indices
    return SDDMM if sddmm_cost < d_in * d_out else DENSE


_CALIBRATED: dict[tuple, str] = {}


def calibrated_method(
    num_indices: int, shape: tuple[int, int], device: torch.device, tokens: int = 1024
) -> str:
    """Time both paths on random inputs of ``tokens`` tokens; cached per (device, shape, count).

    Runs once per distinct layer geometry (a handful per model), not once per plan.
    """
    key = (str(device), tuple(shape), num_indices, tokens)
    if key not in _CALIBRATED:
        gen = torch.Generator().manual_seed(0)
        size = shape[0] * shape[1]
        indices = torch.randperm(size, generator=gen)[:num_indices].to(device)
        x = torch.randn(tokens, shape[1], generator=gen).to(device)
        grad_out = torch.randn(tokens, shape[0], generator=gen).to(device)
        best = {}
        for method in (SDDMM, DENSE):
            plan = make_plan(indices, shape, method=method)
            times = []
            for _ in range(4):  # the first run warms up (allocator, library handles)
                _synchronize(device)
                start = time.perf_counter()
                delta_grad(x, grad_out, plan)
                _synchronize(device)
                times.append(time.perf_counter() - start)
            best[method] = min(times[1:])
        _CALIBRATED[key] = min(best, key=best.get)
    return _CALIBRATED[key]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_indices(indices: Tensor, shape: tuple[int, int]) -> None:
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"shape must be (d_out, d_in) with positive sizes, got {shape}")
    if indices.dim() != 1:
        raise ValueError(f"indices must be 1-D flat indices, got shape {tuple(indices.shape)}")
    if indices.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"indices must be int32 or int64, got {indices.dtype}")
    if indices.numel() == 0:
        return
    size = shape[0] * shape[1]
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= size:
        raise ValueError(f"indices must lie in [0, {size}) for shape {shape}; got [{lo}, {hi}]")


def make_plan(
    indices: Tensor, shape: tuple[int, int], method: str | None = None
) -> DeltaGradPlan:
    """Build the plan for unique flat row-major ``indices`` into a ``(d_out, d_in)`` weight.

    ``method`` forces a path (tests, benchmarks); by default :func:`choose_method` decides.
    """
    shape = (int(shape[0]), int(shape[1]))
    _check_indices(indices, shape)
    n = indices.numel()
    if method is None:
        method = choose_method(n, shape, indices.device)
    if method not in METHODS:
        raise ValueError(f"unknown delta-gradient method {method!r}; expected one of {METHODS}")
    if method == EMPTY and n:
        raise ValueError(f"method 'empty' needs an empty index set, got {n} indices")
    if n == 0:
        method = EMPTY

    mask = order = flat = None
    idx = indices.long()
    sorted_idx, perm = torch.sort(idx)
    if n > 1 and bool((sorted_idx[1:] == sorted_idx[:-1]).any()):
        raise ValueError("indices must be unique")
    if method == SDDMM:
        is_sorted = bool(torch.equal(perm, torch.arange(n, device=idx.device)))
        order = None if is_sorted else perm
        rows = torch.div(sorted_idx, shape[1], rounding_mode="floor")
        cols = sorted_idx - rows * shape[1]
        counts = torch.bincount(rows, minlength=shape[0])
        crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=idx.device)
        torch.cumsum(counts, 0, out=crow[1:])
        with warnings.catch_warnings():  # "Sparse CSR support is in beta": noise per plan
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            mask = torch.sparse_csr_tensor(
                crow, cols, torch.zeros(n, device=idx.device), shape, check_invariants=False
            )
    elif method == DENSE:
        flat = idx
    return DeltaGradPlan(shape, n, method, mask, order, flat, indices, indices._version)


def plan_for(
    indices: Tensor, shape: tuple[int, int], previous: DeltaGradPlan | None
) -> DeltaGradPlan:
    """``previous`` if it was built from these (unchanged) indices, else a new plan."""
    if previous is not None and previous.matches(indices, shape):
        return previous
    return make_plan(indices, shape)


def _flatten_tokens(t: Tensor, width: int, name: str) -> Tensor:
    if t.shape[-1] != width:
        raise ValueError(f"{name} must end in dimension {width}, got shape {tuple(t.shape)}")
    return t.reshape(-1, width)


def delta_grad(x: Tensor, grad_out: Tensor, plan: DeltaGradPlan) -> Tensor:
    """``(grad_out^T @ x).flatten()[indices]`` in the caller's index order and ``x``'s dtype.

    ``x`` is ``(..., d_in)`` and ``grad_out`` is ``(..., d_out)``; leading dims are tokens.
    """
    return delta_grads(x, grad_out, [plan])[0]


def delta_grads(x: Tensor, grad_out: Tensor, plans: Sequence[DeltaGradPlan]) -> list[Tensor]:
    """:func:`delta_grad` for several index sets of the same weight (e.g. the active deltas and
    SFT-AG's growth candidates), sharing the transposed inputs and any dense product."""
    if not plans:
        return []
    shape = plans[0].shape
    if any(plan.shape != shape for plan in plans):
        raise ValueError(f"all plans must share one weight shape, got {[p.shape for p in plans]}")
    d_out, d_in = shape
    x2 = _flatten_tokens(x, d_in, "x")
    g2 = _flatten_tokens(grad_out, d_out, "grad_out")
    if x2.shape[0] != g2.shape[0]:
        raise ValueError(f"x has {x2.shape[0]} tokens but grad_out has {g2.shape[0]}")

    results: list[Tensor | None] = [None] * len(plans)
    sparse = [i for i, plan in enumerate(plans) if plan.method == SDDMM]
    for i, values in zip(sparse, _sddmm([plans[i] for i in sparse], x2, g2)):
        results[i] = _to_caller_order(values, plans[i]).to(x2.dtype)
    dense = None
    for i, plan in enumerate(plans):
        if plan.method == EMPTY:
            results[i] = x2.new_zeros(0)
        elif plan.method == DENSE:
            if dense is None:
                dense = (g2.to(x2.dtype).t() @ x2).reshape(-1)
            results[i] = dense[plan.flat_indices]
    return results


def _sddmm(plans: list[DeltaGradPlan], x2: Tensor, g2: Tensor) -> list[Tensor]:
    """The sampled products in each plan's CSR order, in the compute dtype."""
    if not plans:
        return []
    compute = x2.dtype if x2.dtype in _SDDMM_DTYPES else torch.float32
    if x2.device.type != "cpu":
        g_t, x_c = g2.to(compute).t(), x2.to(compute)
        masks = [p.mask if p.mask.dtype == compute else p.mask.to(compute) for p in plans]
        return [torch.sparse.sampled_addmm(m, g_t, x_c, beta=0.0).values() for m in masks]
    # sampled_addmm's CPU kernel dots rows of its first operand with columns of its second, so
    # it wants dY^T and X^T contiguous; copying them chunk by chunk keeps the copies in cache.
    # Each chunk's products are added in place into one CSR accumulator per plan (beta=1).
    tokens = x2.shape[0]
    chunk = min(TOKEN_CHUNK, tokens)
    # (No warnings filter here: the CSR "beta" warning fires once per process, in make_plan.)
    sums = [
        torch.sparse_csr_tensor(
            p.mask.crow_indices(), p.mask.col_indices(),
            torch.zeros(p.num_indices, dtype=compute), p.shape, check_invariants=False,
        )
        for p in plans
    ]
    g_buf = torch.empty(g2.shape[1], chunk, dtype=compute)
    x_buf = torch.empty(x2.shape[1], chunk, dtype=compute)
    for start in range(0, tokens, chunk):
        width = min(chunk, tokens - start)
        g_t, x_t = g_buf[:, :width], x_buf[:, :width]
        if width < chunk:  # the short last chunk: contiguous buffers of its own width
            g_t = torch.empty(g2.shape[1], width, dtype=compute)
            x_t = torch.empty(x2.shape[1], width, dtype=compute)
        g_t.copy_(g2[start : start + width].t())
        x_t.copy_(x2[start : start + width].t())
        for total in sums:
            torch.sparse.sampled_addmm(total, g_t, x_t.t(), beta=1.0, out=total)
    return [total.values() for total in sums]


def _to_caller_order(values: Tensor, plan: DeltaGradPlan) -> Tensor:
    if plan.order is None:
        return values
    out = torch.empty_like(values)
    out[plan.order] = values
    return out
