"""Optimizers for sparse-delta values that know each value may be reset or re-seeded when the
selector swaps the index it belongs to.

Written by hand because torch's AdamW keeps one step count per tensor, while SpIEL needs a
per-value age (grown weights are "born" at different times, paper section 3.2), and no library
ships an SM3 over a sparse subset of a matrix. Both keep all state in fp32 whatever the values'
dtype (bf16 deltas in qSFT), and state of size O(d_phi) (plus SM3's row and column vectors).

The selector talks to them through :meth:`reset_state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import torch
from torch import Tensor
from torch.optim import Optimizer


@dataclass(frozen=True)
class GrowthSeed:
    """Long-run gradient statistics of newly grown weights from an estimation phase:
    per-weight mean gradient and mean squared gradient over ``num_steps`` optimizer steps."""

    mean_grad: Tensor
    mean_sq_grad: Tensor
    num_steps: int


def _check_common(lr: float, eps: float, weight_decay: float) -> None:
    if not lr >= 0.0:
        raise ValueError(f"invalid learning rate {lr!r}: must be >= 0")
    if not eps >= 0.0:
        raise ValueError(f"invalid eps {eps!r}: must be >= 0")
    if not weight_decay >= 0.0:
        raise ValueError(f"invalid weight_decay {weight_decay!r}: must be >= 0")


# Multi-tensor steps work on chunks of parameters of at most this many entries in all, so the
# transient per-entry tensors of a step (about 5 fp32 per entry in SftAdamW) stay near
# 5 * 4 * 2^24 bytes = 320 MiB however many matrices are tuned.
STEP_CHUNK_ENTRIES = 2**24


def _fp32(tensors: list[Tensor]) -> list[Tensor]:
    """``tensors`` in fp32: an fp32 one is itself, the others (bf16 deltas) views of one fp32
    copy made by a single cast, not a cast kernel per matrix."""
    lower = [i for i, t in enumerate(tensors) if t.dtype != torch.float32]
    if not lower:
        return list(tensors)
    out = list(tensors)
    copies = torch.cat([tensors[i].reshape(-1) for i in lower]).float()
    for i, copy in zip(lower, copies.split([tensors[i].numel() for i in lower])):
        out[i] = copy.view(tensors[i].shape)
    return out


def _chunks(params: list[Tensor]) -> list[list[Tensor]]:
    """``params`` in runs of at most STEP_CHUNK_ENTRIES entries (one parameter larger than
    that forms a run alone), each on one device (a model split over GPUs): the steps
    concatenate a run's tensors."""
    by_device: dict[torch.device, list[Tensor]] = {}
    for param in params:
        by_device.setdefault(param.device, []).append(param)
    runs = []
    for on_device in by_device.values():
        current, size = [], 0
        for param in on_device:
            if current and size + param.numel() > STEP_CHUNK_ENTRIES:
                runs.append(current)
                current, size = [], 0
            current.append(param)
            size += param.numel()
        if current:
            runs.append(current)
    return runs


class _SftOptimizer(Optimizer):
    # State tensors that hold integers (everything else is fp32 whatever the values' dtype).
    _INT_STATE = ("birth", "generation")

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, except that state keeps its own dtypes: torch casts every floating state
        tensor to the parameter's dtype, which for bf16 deltas would make the moments bf16."""
        saved = {pid: {k: v for k, v in s.items() if torch.is_tensor(v)}
                 for pid, s in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for pid, param in zip(saved_ids, params):
            for key, value in saved.get(pid, {}).items():
                dtype = torch.int32 if key in self._INT_STATE else torch.float32
                self.state[param][key] = value.to(device=param.device, dtype=dtype)

    def _group_of(self, param: Tensor) -> dict:
        for group in self.param_groups:
            if any(p is param for p in group["params"]):
                return group
        raise KeyError("this parameter is not optimized by this optimizer")

    def _device_ints(self, values: list[int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """``values`` as a tensor on ``device``, copied from the host only when they change
        (the sizes and offsets of a chunk change at reselections): a copy from pageable host
        memory to a GPU waits for the work queued before it, which would stall every step."""
        cache = self.__dict__.setdefault("_device_ints_cache", {})
        key = (tuple(values), dtype, str(device))
        if key not in cache:
            if len(cache) >= 64:  # stale index sets
                cache.clear()
            cache[key] = torch.tensor(values, dtype=dtype, device=device)
        return cache[key]

    @torch.no_grad()
    def permute_state(self, param: Tensor, order: Tensor) -> None:
        """Reorder ``param``'s per-value state like ``param`` was reordered (new position i
        holds old position ``order[i]``): :meth:`sft.SftLinear.sort_entries` after a
        reselection."""
        for key, value in self.state[param].items():
            if torch.is_tensor(value) and value.shape == param.shape:
                value.copy_(value[order])

    @staticmethod
    def _decay_and_apply(params: list[Tensor], updates: list[Tensor], lr: float,
                         weight_decay: float) -> None:
        """Decoupled weight decay on the deltas (pulls them to the pretrained weight), then
        step; one multi-tensor op each over all of ``params``."""
        values = _fp32(params)  # the parameter itself when fp32
        if weight_decay:
            torch._foreach_mul_(values, 1.0 - lr * weight_decay)
        torch._foreach_add_(values, updates, alpha=-lr)
        lower = [(p, v) for p, v in zip(params, values) if p is not v]
        if lower:  # bf16 deltas: round the fp32 result back once
            torch._foreach_copy_([p for p, _ in lower], [v for _, v in lower])


class SftAdamW(_SftOptimizer):
    """AdamW with a per-value age for bias correction.

    ``SftAdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)``; ``params``
    as for any torch optimizer (e.g. ``sft_model.trainable_parameters_groups``). Weight decay
    is decoupled (the paper's L2 on the deltas; Table 4 uses 30 with lr 1e-4).

    State per parameter: ``exp_avg``, ``exp_avg_sq`` (fp32), ``step`` (the steps this
    parameter took) and ``birth``, a tiny int32 table: a value of generation g is
    ``step - birth[g]`` steps old, and bias correction is 1 / (1 - beta^age) per value. The
    generation of each value is its layer's ``grown_at`` for the deltas of an
    :class:`sft.SftLinear` (so no per-value age is stored twice), else an int32
    ``generation`` state tensor. The steps run as multi-tensor (``torch._foreach_*``) ops over
    all parameters of a group.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        _check_common(lr, eps, weight_decay)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas!r}: each must lie in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _state(self, param: Tensor) -> dict:
        state = self.state[param]
        if not state:
            state["exp_avg"] = torch.zeros_like(param, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(param, dtype=torch.float32)
            state["step"] = 0
            if getattr(param, "sft_layer", None) is None:
                state["generation"] = torch.zeros_like(param, dtype=torch.int32)
            generations = self._generations(param, state)
            # Every generation present so far is as old as this state: born at step 0. (One
            # host sync, when the state is created.)
            size = int(generations.max()) + 1 if generations.numel() else 1
            state["birth"] = torch.zeros(size, dtype=torch.int32, device=param.device)
        return state

    @staticmethod
    def _generations(param: Tensor, state: dict) -> Tensor:
        layer = getattr(param, "sft_layer", None)
        return state["generation"] if layer is None else layer.grown_at

    def ages(self, param: Tensor) -> Tensor:
        """Each value's age in optimizer steps (int32; the bias correction's exponent)."""
        return self._flat_ages([param], [self._state(param)])

    def _flat_ages(self, params: list[Tensor], states: list[dict]) -> Tensor:
        """The ages of several parameters' values, end to end in one int32 tensor, in a fixed
        number of kernels rather than a few per matrix: each parameter's tiny table
        step - birth[g], laid end to end, gathered once at every value's generation plus its
        table's offset."""
        tables = torch._foreach_neg([state["birth"] for state in states])
        torch._foreach_add_(tables, [state["step"] for state in states])
        sizes = [param.numel() for param in params]
        offsets, start = [], 0
        for table in tables:
            offsets.append(start)
            start += table.numel()
        device = tables[0].device
        # int16 grown_at and int32 generations concatenate to int32, the gather's index type
        where = torch.cat([self._generations(p, s) for p, s in zip(params, states)]).int()
        where += torch.repeat_interleave(self._device_ints(offsets, torch.int32, device),
                                         self._device_ints(sizes, torch.int64, device),
                                         output_size=where.numel())
        return torch.cat(tables).index_select(0, where)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for chunk in _chunks(params):
                self._step_chunk(chunk, group)
        return loss

    def _step_chunk(self, params: list[Tensor], group: dict) -> None:
        beta1, beta2 = group["betas"]
        grads = _fp32([param.grad for param in params])
        states = [self._state(param) for param in params]
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        for state in states:
            state["step"] += 1
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        del grads
        # fp32 views of one tensor: the per-tensor kernels below see each parameter's values
        # at the same positions as a tensor of its own (CPU's vectorised pow rounds its tail
        # differently), so the bias corrections are the same bits either way
        ages = list(self._flat_ages(params, states).float().split([p.numel() for p in params]))
        corr1 = torch._foreach_pow(beta1, ages)  # 1 - beta^t as -(beta^t) + 1: the same bits
        torch._foreach_neg_(corr1)
        torch._foreach_add_(corr1, 1.0)
        corr2 = torch._foreach_pow(beta2, ages)
        del ages
        torch._foreach_neg_(corr2)
        torch._foreach_add_(corr2, 1.0)
        updates = torch._foreach_div(exp_avgs, corr1)
        del corr1
        denominators = torch._foreach_div(exp_avg_sqs, corr2)
        del corr2
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_div_(updates, denominators)
        del denominators
        self._decay_and_apply(params, updates, group["lr"], group["weight_decay"])

    @torch.no_grad()
    def reset_state(self, param: Tensor, positions: Tensor, seed: GrowthSeed | None = None,
                    generation: int | None = None) -> None:
        """Forget the state of ``param[positions]`` (dropped weights) and make them generation
        ``generation`` (:class:`sft.SftSelector` passes the reselection iteration it writes into
        ``grown_at``; default: a new generation). With ``seed``, set the state as if Adam had
        tracked those weights for ``seed.num_steps`` steps: age = n, and moments
        m = (1 - beta1^n) * mean_grad, v = (1 - beta2^n) * mean_sq_grad, so that the
        bias-corrected moments equal the estimated ones. All ``positions`` share one age."""
        state = self._state(param)
        birth = state["birth"]
        if generation is None:
            generation = birth.numel()
        if generation >= birth.numel():  # a new generation: grow the (tiny) table
            grown = birth.new_zeros(generation + 1)
            grown[: birth.numel()] = birth
            state["birth"] = birth = grown
        layer = getattr(param, "sft_layer", None)
        if layer is None:
            state["generation"][positions] = generation
        else:  # widens the layer's int16 grown_at when the generation needs it
            layer.set_grown_at(generation, positions)
        age = 0 if seed is None else seed.num_steps
        birth[generation] = state["step"] - age
        if seed is None:
            state["exp_avg"][positions] = 0
            state["exp_avg_sq"][positions] = 0
            return
        beta1, beta2 = self._group_of(param)["betas"]
        n = seed.num_steps
        state["exp_avg"][positions] = (1.0 - beta1**n) * seed.mean_grad.float()
        state["exp_avg_sq"][positions] = (1.0 - beta2**n) * seed.mean_sq_grad.float()


class SftSM3(_SftOptimizer):
    """SM3 (Anil et al. 2019) over the active entries of each sparse delta.

    ``SftSM3(params, lr=0.1, momentum=0.0, beta=0.0, eps=1e-8, weight_decay=0.0)``; ``params``
    must be ``values`` parameters of :class:`sft.SftModel` layers (it needs their indices).
    For an r x c matrix it keeps a row accumulator (r) and a column accumulator (c), the running
    maxima of nu = min(row_i, col_j) + g_ij^2 over each row / column (``beta`` > 0 turns the
    sum into an exponential average). The update is g / sqrt(nu + eps), optionally smoothed by
    ``momentum`` (an O(d_phi) buffer). SFT-MA ranks growth by row_i * col_j. SM3 wants larger
    learning rates than Adam (Table 4: 1e-3 and weight decay 0.3 for SFT-MA on LLaMA2-7b).
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.0, beta: float = 0.0,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        _check_common(lr, eps, weight_decay)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum {momentum!r}: must lie in [0, 1)")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"invalid beta {beta!r}: must lie in [0, 1)")
        super().__init__(params, dict(lr=lr, momentum=momentum, beta=beta, eps=eps,
                                      weight_decay=weight_decay))
        for group in self.param_groups:
            for param in group["params"]:
                if getattr(param, "sft_layer", None) is None:
                    raise TypeError(
                        "SftSM3 optimizes only the 'values' of sparse deltas made by "
                        "sft.get_sft_model (it needs their indices); got another parameter of "
                        f"shape {tuple(param.shape)}"
                    )

    def _state(self, param: Tensor, momentum: float) -> dict:
        state = self.state[param]
        if not state:
            d_out, d_in = param.sft_layer.shape
            state["row_acc"] = torch.zeros(d_out, dtype=torch.float32, device=param.device)
            state["col_acc"] = torch.zeros(d_in, dtype=torch.float32, device=param.device)
            if momentum > 0:
                state["momentum_buffer"] = torch.zeros_like(param, dtype=torch.float32)
        return state

    def accumulators(self, param: Tensor) -> tuple[Tensor, Tensor]:
        """``(row_acc, col_acc)`` of ``param``'s matrix (zeros before the first step)."""
        state = self._state(param, self._group_of(param)["momentum"])
        return state["row_acc"], state["col_acc"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for chunk in _chunks(params):
                self._step_chunk(chunk, group)
        return loss

    def _step_chunk(self, params: list[Tensor], group: dict) -> None:
        momentum, beta = group["momentum"], group["beta"]
        grads = _fp32([param.grad for param in params])
        states = [self._state(param, momentum) for param in params]
        updates: list[Tensor | None] = [None] * len(params)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, param in enumerate(params):
            by_shape.setdefault(param.sft_layer.shape, []).append(i)
        for shape, members in by_shape.items():
            nus = self._second_moments(shape, [params[i] for i in members],
                                       [grads[i] for i in members], [states[i] for i in members],
                                       beta)
            for i, nu in zip(members, nus):
                updates[i] = nu
        torch._foreach_add_(updates, group["eps"])
        torch._foreach_rsqrt_(updates)
        torch._foreach_mul_(updates, grads)  # grad * rsqrt(nu + eps)
        del grads
        if momentum > 0:
            buffers = [self.state[param]["momentum_buffer"] for param in params]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, updates, alpha=1.0 - momentum)
            updates = buffers
        self._decay_and_apply(params, updates, group["lr"], group["weight_decay"])

    def _second_moments(self, shape: tuple[int, int], params: list[Tensor], grads: list[Tensor],
                        states: list[dict], beta: float) -> list[Tensor]:
        """nu of every value of ``params`` (matrices of one ``shape``), with each matrix's row
        and column accumulators updated to their running maxima, in a fixed number of kernels
        rather than a dozen per matrix: the matrices' accumulators are laid end to end, and
        each value's row and column are offset by its matrix's place there. Returns one nu
        per parameter (views of one tensor, each at the positions a tensor of its own would
        have, so the per-tensor arithmetic rounds the same)."""
        d_out, d_in = shape
        sizes = [param.numel() for param in params]
        device = params[0].device
        flat = torch.cat([param.sft_layer.indices for param in params])
        rows = torch.div(flat, d_in, rounding_mode="floor").long()  # int64: scatter_reduce_
        cols = flat.long().sub_(rows, alpha=d_in)
        del flat
        matrix = torch.repeat_interleave(torch.arange(len(params), device=device),
                                         self._device_ints(sizes, torch.int64, device),
                                         output_size=rows.numel())
        rows.add_(matrix, alpha=d_out)
        cols.add_(matrix, alpha=d_in)
        del matrix
        row_acc = torch.cat([state["row_acc"] for state in states])
        col_acc = torch.cat([state["col_acc"] for state in states])
        nu = torch.minimum(row_acc[rows], col_acc[cols])
        nus = list(nu.split(sizes))  # views: the multi-tensor ops below write into nu
        if beta > 0:
            torch._foreach_mul_(nus, beta)
            torch._foreach_addcmul_(nus, grads, grads, value=1.0 - beta)
        else:
            torch._foreach_addcmul_(nus, grads, grads)
        row_acc.scatter_reduce_(0, rows, nu, reduce="amax", include_self=True)
        col_acc.scatter_reduce_(0, cols, nu, reduce="amax", include_self=True)
        torch._foreach_copy_([state["row_acc"] for state in states], list(row_acc.split(d_out)))
        torch._foreach_copy_([state["col_acc"] for state in states], list(col_acc.split(d_in)))
        return nus

    @torch.no_grad()
    def reset_state(self, param: Tensor, positions: Tensor, seed: GrowthSeed | None = None,
                    generation: int | None = None) -> None:
        """Clear the momentum of ``param[positions]``. SM3 has no per-weight second moment to
        seed: a new entry's nu starts from its row/column accumulators, which already hold the
        statistics of its neighbours, so ``seed`` is not used; SM3 keeps no age, so neither is
        ``generation``."""
        state = self._state(param, self._group_of(param)["momentum"])
        if "momentum_buffer" in state:
            state["momentum_buffer"][positions] = 0


def unwrap_optimizer(optimizer) -> Optimizer:
    """The SFT optimizer inside wrappers such as accelerate's ``AcceleratedOptimizer``."""
    seen = optimizer
    while not isinstance(seen, _SftOptimizer) and hasattr(seen, "optimizer"):
        seen = seen.optimizer
    if not isinstance(seen, _SftOptimizer):
        raise TypeError(
            f"SftSelector needs an SftAdamW or SftSM3 optimizer, got {type(optimizer).__name__}. "
            "With transformers.Trainer pass optimizers=(SftAdamW(...), scheduler) or "
            "optimizer_cls_and_kwargs=(SftAdamW, {...})."
        )
    return seen

