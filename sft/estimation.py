"""SFT-AG's gradient-estimation phase for one weight matrix, in O(d_phi) memory.

During the gamma optimizer steps before a reselection we want the long-run gradient of the
weights that might be grown. A dense running sum would cost O(d_theta), so (paper, section
3.2) the K = d_phi growth candidates are fixed on the first micro-batch of the phase as the
top-K |dense gradient|, and afterwards only their K gradients are accumulated (through the
sparse delta-gradient kernel, never a dense buffer).

Two defects of the reference implementation are avoided here:
- statistics are fp32 and the step counter a Python int, whatever the model dtype;
- micro-batch gradients are summed into a per-optimizer-step gradient before the sum and the
  sum of squares are updated, so with gradient accumulation the moments are at full-step scale
  (the scale Adam sees), not shrunk by 1/accumulation. That step gradient exists only from a
  step's first backward to the start of its optimizer step (``sft.SftSelector`` folds it in
  the optimizer's step pre-hook), and not at all when a step is known to be one micro-batch
  without loss scaling (``fold_each_micro_batch``): its gradient is then folded as it is
  made, with the same arithmetic. A candidate holds 12 bytes (index, sum, sum of squares),
  plus 4 through the backward of a step of several micro-batches.
Under ``torch.distributed`` the dense gradient used to pick candidates and each step's
candidate gradient are averaged over ranks, so every rank selects identically.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .distributed import all_reduce_mean_
from .kernels import DeltaGradPlan, make_plan


class CandidateEstimator:
    """Growth candidates of one matrix and their gradient statistics over one phase."""

    def __init__(self, num_candidates: int, shape: tuple[int, int], index_dtype: torch.dtype,
                 fold_each_micro_batch: bool = False):
        self.num_candidates = num_candidates
        self.shape = shape
        self.index_dtype = index_dtype
        # every optimizer step is one micro-batch and no GradScaler may skip it: fold its
        # gradient into the sums as it comes instead of keeping it until the step ends
        self.fold_each_micro_batch = fold_each_micro_batch
        self.candidates: Tensor | None = None
        self.plan: DeltaGradPlan | None = None
        self._step_grad: Tensor | None = None
        self._observed_this_step = False
        self.grad_sum: Tensor | None = None
        self.grad_sq_sum: Tensor | None = None
        self.num_steps = 0

    @classmethod
    def restore(cls, candidates: Tensor, grad_sum: Tensor, grad_sq_sum: Tensor, num_steps: int,
                shape: tuple[int, int]) -> "CandidateEstimator":
        """An estimator mid-phase, from statistics saved at an optimizer-step boundary."""
        estimator = cls(candidates.numel(), shape, candidates.dtype)
        estimator.candidates = candidates
        estimator.plan = make_plan(candidates, shape)
        estimator.grad_sum = grad_sum.float()
        estimator.grad_sq_sum = grad_sq_sum.float()
        estimator.num_steps = num_steps
        return estimator

    @property
    def in_middle_of_step(self) -> bool:
        """True between a micro-batch's backward and the optimizer step's :meth:`end_step`."""
        return self._observed_this_step

    @property
    def needs_dense_gradient(self) -> bool:
        """True until the candidates are picked, i.e. on the phase's first micro-batch."""
        return self.candidates is None

    @torch.no_grad()
    def observe_dense(self, dense_grad: Tensor) -> None:
        """Pick the top-K |gradient| entries of ``dense_grad`` (d_out, d_in) as candidates and
        record their gradient. ``dense_grad`` is averaged over ranks in place first."""
        flat = all_reduce_mean_(dense_grad.float()).reshape(-1)
        k = min(self.num_candidates, flat.numel())
        picked = torch.topk(flat.abs(), k, sorted=False).indices
        picked = torch.sort(picked).values  # sorted: deterministic, and cheapest for the kernel
        self.candidates = picked.to(self.index_dtype)
        self.plan = make_plan(self.candidates, self.shape)
        zeros = torch.zeros(k, dtype=torch.float32, device=flat.device)
        self.grad_sum, self.grad_sq_sum = zeros, zeros.clone()
        self._add_to_step(flat[picked])

    @torch.no_grad()
    def observe(self, candidate_grad: Tensor) -> None:
        """Add one micro-batch's gradient at the candidates (from the sparse kernel)."""
        self._add_to_step(candidate_grad)

    def _add_to_step(self, candidate_grad: Tensor) -> None:
        if self.fold_each_micro_batch:
            if self._observed_this_step:
                raise RuntimeError("a second micro-batch in an optimizer step that was declared "
                                   "to have one (SftSelector's micro_batches_per_step)")
            self._fold(candidate_grad.to(torch.float32, copy=True))
        elif self._step_grad is None:  # the step's first micro-batch
            self._step_grad = candidate_grad.to(torch.float32, copy=True)
        else:
            self._step_grad.add_(candidate_grad.float())
        self._observed_this_step = True

    def _fold(self, step_grad: Tensor) -> None:
        step_grad = all_reduce_mean_(step_grad)
        self.grad_sum.add_(step_grad)
        self.grad_sq_sum.addcmul_(step_grad, step_grad)

    @torch.no_grad()
    def end_step(self, inv_scale: float | None = None) -> None:
        """Fold the finished optimizer step's gradient into the sums (after averaging it over
        ranks). A step in which this matrix got no gradient is not counted.

        ``inv_scale``: with a loss-scaling ``GradScaler`` (fp16), 1 / the step's loss scale;
        the gradients are unscaled, and a step whose candidate gradients overflowed is
        discarded like a step the scaler skipped."""
        if not self._observed_this_step:
            return
        if not self.fold_each_micro_batch:
            step_grad = all_reduce_mean_(self._step_grad)
            if inv_scale is not None:
                step_grad.mul_(inv_scale)
                if not bool(torch.isfinite(step_grad).all()):
                    self.discard_step()
                    return
            self.grad_sum.add_(step_grad)
            self.grad_sq_sum.addcmul_(step_grad, step_grad)
        self.num_steps += 1
        self._step_grad = None
        self._observed_this_step = False

    @torch.no_grad()
    def discard_step(self) -> None:
        """Forget the current step's gradient (a step the GradScaler skipped for inf/NaN). If
        the candidates were picked from that step's gradient, pick them again next step."""
        if not self._observed_this_step:
            return
        self._observed_this_step = False
        self._step_grad = None
        if self.num_steps == 0:
            self.candidates = self.plan = None
            self.grad_sum = self.grad_sq_sum = None

    def moments(self) -> tuple[Tensor, Tensor]:
        """Per-candidate mean gradient and mean squared gradient over the phase's steps."""
        if self.num_steps == 0:
            raise RuntimeError("no optimizer step was observed in this estimation phase")
        return self.grad_sum / self.num_steps, self.grad_sq_sum / self.num_steps

    def state_bytes(self) -> int:
        tensors = (self.candidates, self._step_grad, self.grad_sum, self.grad_sq_sum)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)
