"""`SftLinear`: a frozen linear layer plus a trainable sparse delta, y = x (W + Delta)^T + b.

Delta is held as flat row-major ``indices`` into W (d_out, d_in) and their ``values`` (the
paper's eta and phi); only ``values`` is a trainable parameter. The custom autograd function
needs W + Delta for the matmul, in the forward and again for the input gradient: when the base
weight is a plain tensor of the compute dtype it writes the delta into W's active entries in
place for the duration of the matmul and writes the original entries back (``delta_applied``),
so no W-sized tensor is copied or kept; otherwise (4-bit base, another compute dtype) it builds
W + Delta transiently and frees it. The values' gradient comes from the sparse delta-gradient kernel
(``sft.kernels.delta_grad``, an SDDMM); the dense dW = grad_out^T x is formed only on the
first micro-batch of an SFT-AG estimation phase, where the growth candidates are the top-K
of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base_weights import dense_weight, is_4bit
from .estimation import CandidateEstimator
from .kernels import DeltaGradPlan, delta_grad, delta_grads, plan_for
from .rebuild import InputRebuilder, input_rebuilder
from .targets import weight_shape


def index_dtype_for(numel: int) -> torch.dtype:
    """int32 indices while they fit (half the memory), int64 beyond 2^31 entries."""
    return torch.int32 if numel < 2**31 else torch.int64


def generation_dtype_for(iteration: int) -> torch.dtype:
    """int16 reselection iterations while they fit (32,767 reselections: 655k steps at the
    paper's S = 20), int32 beyond: two bytes per tuned entry instead of four."""
    return torch.int16 if iteration <= torch.iinfo(torch.int16).max else torch.int32


def random_subset(numel: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` distinct sorted integers from [0, numel), without an O(numel) buffer when the
    subset is small (a randperm of a 7b MLP matrix alone would be 360 MB)."""
    if count > numel // 4:
        return torch.sort(torch.randperm(numel, generator=generator)[:count]).values
    chosen = torch.empty(0, dtype=torch.int64)
    while chosen.numel() < count:
        draw = torch.randint(numel, (count - chosen.numel() + count // 16 + 8,), generator=generator)
        merged = torch.unique(torch.cat([chosen, draw]))
        if merged.numel() > count:  # drop a random surplus, not the largest values
            keep = torch.randperm(merged.numel(), generator=generator)[:count]
            merged = torch.sort(merged[keep]).values
        chosen = merged
    return chosen


def scatter_delta(weight: Tensor, indices: Tensor, values: Tensor) -> Tensor:
    """``weight`` (modified in place) + scatter(indices, values), in ``weight``'s dtype."""
    weight.view(-1).index_add_(0, indices, values.to(weight.dtype))
    return weight


class _SparseDeltaLinear(torch.autograd.Function):
    """x (W + Delta)^T (+ b, frozen); gradients for x and for the delta values only."""

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, indices: Tensor, layer: "SftLinear",
                with_bias: bool) -> Tensor:
        bias = layer.bias_in(x.dtype) if with_bias else None
        with layer.delta_applied(x.dtype, values, indices) as weight:
            out = F.linear(x, weight, bias)
        ctx.layer = layer
        ctx.plan = layer.delta_grad_plan(x.dtype, x.numel() // max(1, x.shape[-1]))
        ctx.estimator = layer.estimator
        ctx.rebuild_x = layer.input_rebuilder(x)
        if ctx.rebuild_x is None:
            ctx.save_for_backward(x, values, indices)
        else:  # x is rebuilt in the backward from what its producers saved (sft.rebuild)
            ctx.save_for_backward(values, indices)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if ctx.rebuild_x is None:
            x, values, indices = ctx.saved_tensors
        else:
            values, indices = ctx.saved_tensors
            x = ctx.rebuild_x()
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            with ctx.layer.delta_applied(grad_out.dtype, values, indices) as weight:
                grad_x = (grad_out @ weight).to(x.dtype)
        if ctx.needs_input_grad[1]:
            estimator: CandidateEstimator | None = ctx.estimator
            if estimator is not None and estimator.needs_dense_gradient:
                d_in, d_out = x.shape[-1], grad_out.shape[-1]
                dense = grad_out.reshape(-1, d_out).t().to(x.dtype) @ x.reshape(-1, d_in)
                grad_values = dense.reshape(-1).index_select(0, indices)
                estimator.observe_dense(dense)
                del dense
            elif estimator is not None:  # active deltas and candidates share the transposes
                grad_values, candidates = delta_grads(x, grad_out, [ctx.plan, estimator.plan])
                estimator.observe(candidates)
            else:
                grad_values = delta_grad(x, grad_out, ctx.plan)
            grad_values = grad_values.to(values.dtype)
        return grad_x, grad_values, None, None, None


class SftLinear(nn.Module):
    """Wraps ``base_layer`` (``nn.Linear`` or bitsandbytes ``Linear4bit``), which stays frozen
    and untouched, and adds a sparse delta of ``num_active`` entries.

    Buffers: ``indices`` (flat, row-major into the (d_out, d_in) weight, int32, kept in
    ascending order) and ``grown_at`` (the reselection iteration at which each entry was last
    grown; 0 = the random initial set; :class:`sft.SftAdamW` derives each value's age from
    it; int16 until an iteration needs more, see :meth:`set_grown_at`). Parameter:
    ``values``. ``estimator`` is set by :class:`sft.SftSelector` during an SFT-AG
    gradient-estimation phase.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        indices: Tensor,
        values: Tensor,
        grown_at: Tensor | None = None,
    ):
        super().__init__()
        self.base_layer = base_layer
        self.shape = weight_shape(base_layer)
        numel = self.shape[0] * self.shape[1]
        if indices.dim() != 1 or indices.shape != values.shape:
            raise ValueError(
                f"indices {tuple(indices.shape)} and values {tuple(values.shape)} must be 1-D "
                "and of equal length"
            )
        device = base_layer.weight.device
        self.register_buffer("indices", indices.to(device=device, dtype=index_dtype_for(numel)))
        if grown_at is None:
            grown_at = torch.zeros(indices.shape, dtype=torch.int16)
        latest = int(grown_at.max()) if grown_at.numel() else 0  # one sync, at construction
        self.register_buffer("grown_at", grown_at.to(device=device, dtype=generation_dtype_for(latest)))
        self.values = nn.Parameter(values.to(device))
        self._link_values()
        self.estimator: CandidateEstimator | None = None
        self._plan: DeltaGradPlan | None = None
        self._rebuild_checked: dict[tuple, bool] = {}
        self.sort_entries()  # files written before indices were kept sorted may hold any order

    @torch.no_grad()
    def sort_entries(self) -> Tensor:
        """Put the entries in ascending index order, in place (indices, values, grown_at and
        any gradient move together), so that the kernels need no stored permutation. Returns
        the permutation applied (new position -> old position), for the optimizer's state.
        Sorts unconditionally: checking first would cost a host sync per matrix on CUDA. The
        transient is a sorted copy, an int64 permutation and one permuted copy at a time."""
        indices = self.indices
        sorted_indices, order = torch.sort(indices)
        indices.copy_(sorted_indices)
        del sorted_indices
        self.grown_at.copy_(self.grown_at[order])
        self.values.data.copy_(self.values.data[order])
        if self.values.grad is not None:
            self.values.grad.copy_(self.values.grad[order])
        return order

    @torch.no_grad()
    def set_grown_at(self, iteration: "int | Tensor", positions: Tensor | None = None) -> None:
        """Write reselection ``iteration`` (an int, or one per entry) into ``grown_at`` at
        ``positions`` (default: every entry), widening the buffer to int32 first when the
        iteration does not fit int16; a plain tensor copy would wrap around silently."""
        latest = iteration if isinstance(iteration, int) else (
            int(iteration.max()) if iteration.numel() else 0)
        dtype = generation_dtype_for(latest)
        if torch.iinfo(dtype).max > torch.iinfo(self.grown_at.dtype).max:
            self.grown_at = self.grown_at.to(dtype)
        if positions is None:
            self.grown_at.copy_(iteration)
        else:
            self.grown_at[positions] = iteration

    def _link_values(self) -> None:
        # Lets SftSM3 find this layer's geometry from the parameter alone.
        self.values.sft_layer = self

    def __setstate__(self, state):
        # deepcopy / unpickling rebuild the Parameter without its attributes: relink.
        super().__setstate__(state)
        self._link_values()

    @classmethod
    def with_random_indices(
        cls, base_layer: nn.Linear, num_active: int, dtype: torch.dtype, generator: torch.Generator
    ) -> "SftLinear":
        """Paper init: values 0 at a random subset of positions."""
        d_out, d_in = weight_shape(base_layer)
        indices = random_subset(d_out * d_in, num_active, generator)
        return cls(base_layer, indices, torch.zeros(num_active, dtype=dtype))

    @property
    def num_active(self) -> int:
        return self.indices.numel()

    def extra_repr(self) -> str:
        return f"shape={self.shape}, num_active={self.num_active}, dtype={self.values.dtype}"

    def delta_grad_plan(self, dtype: torch.dtype = torch.float32, tokens: int = 1024) -> DeltaGradPlan:
        """The kernel's plan for the current index set (rebuilt only when indices change),
        chosen for inputs of ``dtype`` with ``tokens`` tokens (those of the forward that
        builds it)."""
        self._plan = plan_for(self.indices, self.shape, self._plan, dtype=dtype, tokens=tokens)
        return self._plan

    def input_rebuilder(self, x: Tensor) -> InputRebuilder | None:
        """How the backward gets ``x`` back without saving it (``sft.rebuild``), or None to
        save it. A rebuild is compared with ``x`` bit for bit the first time this layer sees
        its producer graph (one host sync per layer and graph, not per step)."""
        rebuilder = input_rebuilder(x)
        if rebuilder is None:
            return None
        trusted = self._rebuild_checked.get(rebuilder.signature)
        if trusted is None:
            trusted = torch.equal(rebuilder.replay(), x)
            self._rebuild_checked[rebuilder.signature] = trusted
        return rebuilder if trusted else None

    @property
    def delta_grad_method(self) -> str | None:
        """The delta-gradient path of the current plan (``None`` before the first forward)."""
        return None if self._plan is None else self._plan.method

    def merged_weight(
        self, dtype: torch.dtype, values: Tensor | None = None, indices: Tensor | None = None
    ) -> Tensor:
        """A new tensor W + Delta in ``dtype`` (the base weight itself is never modified).

        W + Delta is summed in fp32 and rounded once to the base weight's dtype, exactly what
        :meth:`sft.SftModel.merge_and_unload` stores, so the unmerged and the merged model
        compute with the same weights. A delta below half a unit in the last place of its
        weight in that dtype (bf16: about |W| / 256) changes neither; the fp32 values keep
        accumulating it during training, as fp32 master weights do."""
        weight, fresh = dense_weight(self.base_layer)
        flat, _, summed = self._merged_entries(weight, values, indices)
        if fresh and weight.dtype == dtype:
            merged = weight
        else:
            merged = weight.detach().to(dtype, copy=True)
        merged.view(-1).index_put_((flat,), summed.to(dtype))
        return merged

    @contextmanager
    def delta_applied(
        self, dtype: torch.dtype, values: Tensor | None = None, indices: Tensor | None = None
    ) -> Iterator[Tensor]:
        """W + Delta in ``dtype`` (the same numbers as :meth:`merged_weight`) for the block.

        A plain base weight of ``dtype`` gets the merged values written into its active entries
        in place, and its original entries back, bit for bit, when the block ends: the cost is
        two scatters of the active entries instead of a W-sized copy per call. It goes through
        ``.data`` so the parameter's autograd version counter is not bumped. Nothing else may
        read the base weight while the block runs (true inside one forward or backward)."""
        weight = self.base_layer.weight
        if is_4bit(self.base_layer) or weight.dtype != dtype or not weight.is_contiguous():
            yield self.merged_weight(dtype, values, indices)
            return
        flat, original, summed = self._merged_entries(weight, values, indices)
        base = weight.data.view(-1)
        base.index_put_((flat,), summed)  # index_put_, unlike index_copy_, takes int32 indices
        try:
            yield weight.data
        finally:
            base.index_put_((flat,), original)

    def _merged_entries(
        self, weight: Tensor, values: Tensor | None, indices: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The flat active indices, W there, and fl(W + Delta) there: summed in fp32 (fp64
        for an fp64 W) and rounded once to the base weight's dtype. One ``add`` with an
        ``out`` of W's dtype does both (type promotion computes in fp32, the output is rounded
        as it is written): on CUDA one kernel where casting up, adding and casting back were
        three."""
        values = self.values if values is None else values
        flat = self.indices if indices is None else indices
        original = weight.detach().reshape(-1).index_select(0, flat)
        summed = torch.add(original, values.detach().float(), out=torch.empty_like(original))
        return flat, original, summed

    def bias_in(self, dtype: torch.dtype) -> Tensor | None:
        bias = self.base_layer.bias
        return None if bias is None else bias.detach().to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and self.values.requires_grad:
            bias = self.base_layer.bias
            if bias is not None and bias.requires_grad:  # a trainable bias gets its gradient
                out = _SparseDeltaLinear.apply(x, self.values, self.indices, self, False)
                return out + bias.to(out.dtype)
            return _SparseDeltaLinear.apply(x, self.values, self.indices, self, True)
        return F.linear(x, self.merged_weight(x.dtype), self.bias_in(x.dtype))

    def delta_dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Delta as a dense (d_out, d_in) matrix (for merging and inspection only)."""
        dense = torch.zeros(self.shape, dtype=dtype, device=self.indices.device)
        return scatter_delta(dense, self.indices, self.values.detach())

    def state_bytes(self) -> int:
        """Bytes this layer keeps beyond the frozen base layer."""
        tensors = [self.indices, self.grown_at, self.values]
        total = sum(t.numel() * t.element_size() for t in tensors)
        return total + (self.estimator.state_bytes() if self.estimator is not None else 0)

