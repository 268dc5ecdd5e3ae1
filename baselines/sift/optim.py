"""SiftAdamW: the mask choice, gradient gathering and sparse AdamW update of SIFT.

State per tuned weight (all O(k)): `indices` (flat, int64), `orig` (pretrained values at the
indices, so the artifact is a delta and weight decay pulls towards the pretrained weights),
`master` (fp32 tuned values: a bf16 weight would round small updates away), `exp_avg`,
`exp_avg_sq` (fp32), and the transient `grad` (fp32 sum over the micro-batches of the step). The dense gradient is never kept: the post-accumulate hook gathers it and
sets `param.grad = None`. The Trainer therefore sees no dense gradients; clipping to
`max_grad_norm` happens here, on the gathered gradients.
"""
from __future__ import annotations

import math

import torch


class SiftAdamW(torch.optim.Optimizer):
    def __init__(self, params, budgets: list[int], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, max_grad_norm: float = 0.0, mask_batches: int = 1):
        params = list(params)
        if len(params) != len(budgets):
            raise ValueError("SiftAdamW: one budget per parameter")
        if mask_batches < 1:
            raise ValueError(f"SiftAdamW: mask_batches must be >= 1, got {mask_batches}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.max_grad_norm = max_grad_norm
        self.mask_batches = mask_batches
        self.budget = {p: int(k) for p, k in zip(params, budgets)}
        self._scores: dict[torch.Tensor, torch.Tensor] = {}  # dense |g| sums while choosing
        self._seen: dict[torch.Tensor, int] = {}
        self._hooks = [p.register_post_accumulate_grad_hook(self._gather) for p in params]

    @torch.no_grad()
    def _gather(self, param: torch.Tensor) -> None:
        grad = param.grad.reshape(-1)
        state = self.state[param]
        if "indices" not in state:
            score = self._scores.get(param)
            score = grad.abs().float() if score is None else score.add_(grad.abs().float())
            self._seen[param] = self._seen.get(param, 0) + 1
            if self._seen[param] < self.mask_batches:
                self._scores[param] = score
                param.grad = None
                return
            self._scores.pop(param, None)
            indices = torch.topk(score, self.budget[param], sorted=False).indices.sort().values
            orig = param.detach().reshape(-1)[indices].clone()
            state.update(indices=indices, orig=orig, master=orig.to(torch.float32, copy=True),
                         exp_avg=torch.zeros(len(indices), device=param.device),
                         exp_avg_sq=torch.zeros(len(indices), device=param.device),
                         grad=torch.zeros(len(indices), device=param.device), step=0)
        state["grad"].add_(grad[state["indices"]].float())
        param.grad = None

    def _clip_coefficient(self) -> float:
        if not self.max_grad_norm:
            return 1.0
        norm = math.sqrt(sum(float(s["grad"].pow(2).sum()) for s in self.state.values() if "grad" in s))
        return min(1.0, self.max_grad_norm / (norm + 1e-6))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        clip = self._clip_coefficient()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                state = self.state.get(param)
                if not state or "indices" not in state:
                    continue  # mask not chosen yet (still accumulating mask_batches)
                grad = state["grad"] * clip
                state["step"] += 1
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias1 = 1 - beta1 ** state["step"]
                bias2 = 1 - beta2 ** state["step"]
                update = (state["exp_avg"] / bias1) / ((state["exp_avg_sq"] / bias2).sqrt() + group["eps"])
                values = state["master"]
                if group["weight_decay"]:
                    values -= group["lr"] * group["weight_decay"] * (values - state["orig"].float())
                values -= group["lr"] * update
                flat = param.data.view(-1)
                flat[state["indices"]] = values.to(flat.dtype)
                state["grad"].zero_()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state keeping each tensor's own dtype: torch's default casts every state
        tensor to the parameter's dtype, which would turn indices into floats."""
        params = [p for g in self.param_groups for p in g["params"]]
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state.clear()
        for i, saved in state_dict["state"].items():
            param = params[int(i)]
            self.state[param] = {k: v.to(param.device) if torch.is_tensor(v) else v
                                 for k, v in saved.items()}

    def deltas(self) -> dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """{param: (indices, tuned - pretrained values)} of every tuned weight."""
        out = {}
        for param, state in self.state.items():
            if "indices" in state:
                out[param] = (state["indices"], state["master"] - state["orig"].float())
        return out
