"""Gradient of the active deltas of one sparse-delta linear layer (paper, Appendix B).

For ``Y = X (W + Delta)^T`` the gradient of the active entry ``(r, c)`` of ``Delta`` is
``dY[:, r] . X[:, c]``: a sampled dense-dense matmul (SDDMM) costing ``b * N`` FLOPs instead of
the ``b * d_in * d_out`` of the dense ``dW = dY^T X``. Which of the two is faster depends on
the density and the shape, so :func:`make_plan` decides once per index set (the index set
changes only every S reselection steps) and caches only the CSR row pointer (O(d_out)):
nothing per active entry, since the kernels read the caller's int32 indices directly and build
the CSR column indices transiently. :func:`delta_grad` then only runs it.

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
    """What :func:`delta_grad` needs for one index set, built once by :func:`make_plan`.

    ``method`` is the dispatch decision. Nothing per active entry is kept here: the kernels
    read the caller's ``indices`` (``source``) directly. For ``"sddmm"`` only the CSR row
    pointer ``crow`` (d_out + 1 entries, the indices' dtype) is cached; the column indices and
    the CSR values are built transiently inside each call. ``is_sorted`` says whether the
    caller's indices are ascending (:class:`sft.SftLinear` keeps them so); unsorted ones are
    sorted transiently per call. ``source`` and ``source_version`` identify the index tensor
    the plan was built from, so :func:`plan_for` can reuse it until the indices change.
    """

    shape: tuple[int, int]
    num_indices: int
    method: str
    crow: Tensor | None
    is_sorted: bool
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
    num_indices: int, shape: tuple[int, int], device: torch.device, threads: int | None = None,
    dtype: torch.dtype = torch.float32, tokens: int = 1024,
) -> str:
    """The dispatch rule: the faster path for this many active entries in a W of ``shape``.

    On CPU a cost model measured on this kind of machine decides, for ``threads`` intra-op
    threads (default: torch's current setting); on other devices (CUDA) the two paths are
    timed once per shape, count, input ``dtype`` and token count (:func:`calibrated_method`),
    since their speed ratio there is nothing like the CPU's and depends on the dtype (bf16
    tensor-core GEMMs) and the batch.
    """
    if num_indices == 0:
        return EMPTY
    device = torch.device(device)
    if device.type != "cpu":
        return calibrated_method(num_indices, shape, device, tokens=tokens, dtype=dtype)
    d_out, d_in = shape
    threads = torch.get_num_threads() if threads is None else threads
    transposes = CPU_TRANSPOSE_COST * max(1, threads) * (d_in + d_out)
    sddmm_cost = transposes + CPU_DOT_COST * num_indices
    return SDDMM if sddmm_cost < d_in * d_out else DENSE


_CALIBRATED: dict[tuple, str] = {}


def token_bucket(tokens: int) -> int:
    """``tokens`` rounded up to a power of two: batches of varying length share a calibration."""
    return 1 << max(0, int(tokens) - 1).bit_length()


def calibrated_method(
    num_indices: int, shape: tuple[int, int], device: torch.device, tokens: int = 1024,
    dtype: torch.dtype = torch.float32,
) -> str:
    """Time both paths on random inputs of ``dtype`` and ``tokens`` tokens (rounded up to a
    power of two); cached per (device, shape, count, dtype, tokens).

    Runs once per distinct layer geometry and batch size (a handful per run), not once per
    plan. The timed index set is sorted int32, as :class:`sft.SftLinear` keeps its own.
    """
    tokens = token_bucket(tokens)
    key = (str(device), tuple(shape), num_indices, dtype, tokens)
    if key not in _CALIBRATED:
        gen = torch.Generator().manual_seed(0)
        size = shape[0] * shape[1]
        chosen = torch.randperm(size, generator=gen)[:num_indices]
        indices = torch.sort(chosen).values.to(device=device, dtype=torch.int32)
        x = torch.randn(tokens, shape[1], generator=gen).to(device=device, dtype=dtype)
        grad_out = torch.randn(tokens, shape[0], generator=gen).to(device=device, dtype=dtype)
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
    indices: Tensor, shape: tuple[int, int], method: str | None = None,
    dtype: torch.dtype = torch.float32, tokens: int = 1024,
) -> DeltaGradPlan:
    """Build the plan for unique flat row-major ``indices`` into a ``(d_out, d_in)`` weight.

    ``method`` forces a path (tests, benchmarks); by default :func:`choose_method` decides,
    for inputs of ``dtype`` with ``tokens`` tokens (what the training feeds this layer).
    """
    shape = (int(shape[0]), int(shape[1]))
    _check_indices(indices, shape)
    n = indices.numel()
    if method is None:
        method = choose_method(n, shape, indices.device, dtype=dtype, tokens=tokens)
    if method not in METHODS:
        raise ValueError(f"unknown delta-gradient method {method!r}; expected one of {METHODS}")
    if method == EMPTY and n:
        raise ValueError(f"method 'empty' needs an empty index set, got {n} indices")
    if n == 0:
        method = EMPTY

    # One sync per index set (every S steps), not per step: uniqueness and order.
    steps = indices[1:] - indices[:-1]
    is_sorted = bool((steps > 0).all())
    if not is_sorted:
        sorted_idx = torch.sort(indices).values
        if n > 1 and bool((sorted_idx[1:] == sorted_idx[:-1]).any()):
            raise ValueError("indices must be unique")
    del steps
    crow = None
    if method == SDDMM:
        rows = torch.div(indices, shape[1], rounding_mode="floor")
        counts = torch.bincount(rows, minlength=shape[0])
        crow = torch.zeros(shape[0] + 1, dtype=indices.dtype, device=indices.device)
        torch.cumsum(counts, 0, out=crow[1:])
    return DeltaGradPlan(shape, n, method, crow, is_sorted, indices, indices._version)


def plan_for(
    indices: Tensor, shape: tuple[int, int], previous: DeltaGradPlan | None,
    dtype: torch.dtype = torch.float32, tokens: int = 1024,
) -> DeltaGradPlan:
    """``previous`` if it was built from these (unchanged) indices, else a new plan."""
    if previous is not None and previous.matches(indices, shape):
        return previous
    return make_plan(indices, shape, dtype=dtype, tokens=tokens)


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
        results[i] = values.to(x2.dtype)
    dense = None
    for i, plan in enumerate(plans):
        if plan.method == EMPTY:
            results[i] = x2.new_zeros(0)
        elif plan.method == DENSE:
            if dense is None:
                dense = (g2.to(x2.dtype).t() @ x2).reshape(-1)
            results[i] = dense.index_select(0, plan.source)  # int32 indices, no int64 copy
    return results


def _csr_of(plan: DeltaGradPlan, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """A transient CSR tensor of zeros at the plan's (sorted) indices, and the permutation
    that sorted them (``None`` when the caller's indices were sorted already)."""
    indices, order = plan.source, None
    if not plan.is_sorted:
        indices, order = torch.sort(indices)
    cols = torch.remainder(indices, plan.shape[1])
    values = torch.zeros(plan.num_indices, dtype=dtype, device=indices.device)
    with warnings.catch_warnings():  # "Sparse CSR support is in beta": noise per call
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        csr = torch.sparse_csr_tensor(plan.crow, cols, values, plan.shape, check_invariants=False)
    return csr, order


def _sddmm(plans: list[DeltaGradPlan], x2: Tensor, g2: Tensor) -> list[Tensor]:
    """The sampled products at each plan's indices, in the caller's order and the compute
    dtype."""
    if not plans:
        return []
    compute = x2.dtype if x2.dtype in _SDDMM_DTYPES else torch.float32
    csrs = [_csr_of(plan, compute) for plan in plans]
    if x2.device.type != "cpu":
        g_t, x_c = g2.to(compute).t(), x2.to(compute)
        sums = [torch.sparse.sampled_addmm(csr, g_t, x_c, beta=0.0) for csr, _ in csrs]
    else:
        sums = [csr for csr, _ in csrs]
        _sddmm_cpu_into(sums, x2, g2, compute)
    return [_to_caller_order(total.values(), order) for total, (_, order) in zip(sums, csrs)]


def _sddmm_cpu_into(sums: list[Tensor], x2: Tensor, g2: Tensor, compute: torch.dtype) -> None:
    """Adds dY^T X sampled at each CSR tensor of ``sums`` into its values, on CPU.

    sampled_addmm's CPU kernel dots rows of its first operand with columns of its second, so
    it wants dY^T and X^T contiguous; copying them chunk by chunk keeps the copies in cache.
    Each chunk's products are added in place into the CSR accumulators (beta=1)."""
    tokens = x2.shape[0]
    chunk = min(TOKEN_CHUNK, tokens)
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


def _to_caller_order(values: Tensor, order: Tensor | None) -> Tensor:
    if order is None:
        return values
    out = torch.empty_like(values)
    out[order] = values
    return out
