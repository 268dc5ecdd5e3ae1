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

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

SDDMM = "sddmm"
DENSE = "dense"
EMPTY = "empty"
METHODS = (SDDMM, DENSE, EMPTY)

# Above this density the dense dW + gather beats sampled_addmm (measured by bench.kernels on
# SmolLM2-135M shapes, 2 CPU threads; see docs/benchmarks.md).
DENSE_ABOVE_DENSITY = 0.10


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


def choose_method(num_indices: int, shape: tuple[int, int], device: torch.device) -> str:
    """The dispatch rule: the fastest path for this many active entries in a W of ``shape``."""
    if num_indices == 0:
        return EMPTY
    density = num_indices / (shape[0] * shape[1])
    return DENSE if density > DENSE_ABOVE_DENSITY else SDDMM


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


# sampled_addmm computes in fp32/fp64 only on CPU; other dtypes go through fp32.
_SDDMM_DTYPES = (torch.float32, torch.float64)


def delta_grad(x: Tensor, grad_out: Tensor, plan: DeltaGradPlan) -> Tensor:
    """``(grad_out^T @ x).flatten()[indices]`` in the caller's index order and ``x``'s dtype.

    ``x`` is ``(..., d_in)`` and ``grad_out`` is ``(..., d_out)``; leading dims are tokens.
    """
    d_out, d_in = plan.shape
    x2 = _flatten_tokens(x, d_in, "x")
    g2 = _flatten_tokens(grad_out, d_out, "grad_out")
    if x2.shape[0] != g2.shape[0]:
        raise ValueError(f"x has {x2.shape[0]} tokens but grad_out has {g2.shape[0]}")
    if plan.method == EMPTY:
        return x2.new_zeros(0)
    if plan.method == DENSE:
        dense = g2.to(x2.dtype).t() @ x2
        return dense.reshape(-1)[plan.flat_indices]
    compute = x2.dtype if x2.dtype in _SDDMM_DTYPES else torch.float32
    mask = plan.mask if plan.mask.dtype == compute else plan.mask.to(compute)
    values = torch.sparse.sampled_addmm(
        mask, g2.to(compute).t(), x2.to(compute), beta=0.0
    ).values()
    if plan.order is not None:
        out = torch.empty_like(values)
        out[plan.order] = values
        values = out
    return values.to(x2.dtype)
