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


class _SftOptimizer(Optimizer):
    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, except that state keeps its own dtypes: torch casts every floating state
        tensor to the parameter's dtype, which for bf16 deltas would make the moments (and,
        as floats, the ages) bf16; a bf16 age stops counting at 256."""
        saved = {pid: {k: v for k, v in s.items() if torch.is_tensor(v)}
                 for pid, s in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for pid, param in zip(saved_ids, params):
            for key, value in saved.get(pid, {}).items():
                dtype = torch.int32 if key == "age" else torch.float32
                self.state[param][key] = value.to(device=param.device, dtype=dtype)

    def _group_of(self, param: Tensor) -> dict:
        for group in self.param_groups:
            if any(p is param for p in group["params"]):
                return group
        raise KeyError("this parameter is not optimized by this optimizer")

    @staticmethod
    def _decay_and_apply(param: Tensor, update: Tensor, lr: float, weight_decay: float) -> None:
        """Decoupled weight decay on the delta (pulls it to the pretrained weight), then step."""
        value = param.float()
        if weight_decay:
            value.mul_(1.0 - lr * weight_decay)
        value.add_(update, alpha=-lr)
        param.copy_(value)


class SftAdamW(_SftOptimizer):
    """AdamW with a per-value age for bias correction.

    ``SftAdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)``; ``params``
    as for any torch optimizer (e.g. ``sft_model.trainable_parameters_groups``). Weight decay
    is decoupled (the paper's L2 on the deltas; Table 4 uses 30 with lr 1e-4).

    State per parameter: ``exp_avg``, ``exp_avg_sq`` (fp32) and ``age`` (int32, steps since
    the value was grown). Bias correction is 1 / (1 - beta^age) per value.
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
            state["age"] = torch.zeros_like(param, dtype=torch.int32)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.float()
                state = self._state(param)
                exp_avg, exp_avg_sq, age = state["exp_avg"], state["exp_avg_sq"], state["age"]
                age.add_(1)
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                t = age.float()
                corr1 = 1.0 - torch.pow(beta1, t)
                corr2 = 1.0 - torch.pow(beta2, t)
                update = (exp_avg / corr1) / ((exp_avg_sq / corr2).sqrt_().add_(group["eps"]))
                self._decay_and_apply(param, update, group["lr"], group["weight_decay"])
        return loss

    @torch.no_grad()
    def reset_state(self, param: Tensor, positions: Tensor, seed: GrowthSeed | None = None) -> None:
        """Forget the state of ``param[positions]`` (dropped weights); with ``seed``, set it as
        if Adam had tracked those weights for ``seed.num_steps`` steps: age = n, and moments
        m = (1 - beta1^n) * mean_grad, v = (1 - beta2^n) * mean_sq_grad, so that the
        bias-corrected moments equal the estimated ones."""
        state = self._state(param)
        if seed is None:
            for key in ("exp_avg", "exp_avg_sq", "age"):
                state[key][positions] = 0
            return
        beta1, beta2 = self._group_of(param)["betas"]
        n = seed.num_steps
        state["exp_avg"][positions] = (1.0 - beta1**n) * seed.mean_grad.float()
        state["exp_avg_sq"][positions] = (1.0 - beta2**n) * seed.mean_sq_grad.float()
        state["age"][positions] = n


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
            momentum, beta = group["momentum"], group["beta"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.float()
                state = self._state(param, momentum)
                row_acc, col_acc = state["row_acc"], state["col_acc"]
                d_in = param.sft_layer.shape[1]
                flat = param.sft_layer.indices.long()
                rows = torch.div(flat, d_in, rounding_mode="floor")
                cols = flat - rows * d_in
                nu = torch.minimum(row_acc[rows], col_acc[cols])
                if beta > 0:
                    nu.mul_(beta).addcmul_(grad, grad, value=1.0 - beta)
                else:
                    nu.addcmul_(grad, grad)
                row_acc.scatter_reduce_(0, rows, nu, reduce="amax", include_self=True)
                col_acc.scatter_reduce_(0, cols, nu, reduce="amax", include_self=True)
                update = grad * nu.add_(group["eps"]).rsqrt_()
                if momentum > 0:
                    buffer = state["momentum_buffer"]
                    buffer.mul_(momentum).add_(update, alpha=1.0 - momentum)
                    update = buffer
                self._decay_and_apply(param, update, group["lr"], group["weight_decay"])
        return loss

    @torch.no_grad()
    def reset_state(self, param: Tensor, positions: Tensor, seed: GrowthSeed | None = None) -> None:
        """Clear the momentum of ``param[positions]``. SM3 has no per-weight second moment to
        seed: a new entry's nu starts from its row/column accumulators, which already hold the
        statistics of its neighbours, so ``seed`` is not used."""
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

