"""`SftSelector`: SpIEL's drop-and-grow reselection of the tuned index sets.

Timeline (S = ``reselection_steps``, gamma = ``accumulation_steps``, T = total optimizer
steps): reselections happen after optimizer steps t = gamma, gamma + S, gamma + 2S, ... while
t < T (never after the last step: a run with T <= gamma keeps its random initial sets). The first one replaces every index (the random init carries no information); later ones
replace k(t) = alpha (T - t) / T d_phi per matrix (or alpha (1 + cos(pi t / T)) / 2 d_phi).

- DROP: the k active entries with the smallest |delta|; their values return to exactly 0
  (the pretrained weight) and their optimizer state is cleared.
- GROW, SFT-AG: during the gamma steps before t the layers accumulate gradients of K = d_phi
  candidates (:mod:`sft.estimation`); grow the top-k |mean gradient| among candidates not
  still active, and seed Adam's moments and per-weight age from the phase's statistics.
- GROW, SFT-MA: rank every inactive position (i, j) by SM3's row_i * col_j (equivalent to the
  paper's (row_i col_j)^(1/4)) with :func:`sft.growth.top_outer_product`, a threshold search
  that never builds the dense scores.

Each grown entry records the reselection iteration (1, 2, ...) in ``grown_at`` (Figure 3).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from .estimation import CandidateEstimator
from .growth import top_outer_product
from .io import atomic_save_safetensors, read_safetensors
from .layer import SftLinear
from .optim import GrowthSeed, SftSM3, unwrap_optimizer

SELECTOR_NAME = "sft_selector.safetensors"


def replacement_count(num_active: int, step: int, total_steps: int, rate: float,
                      schedule: str, first: bool) -> int:
    """k(t): how many entries of a matrix with ``num_active`` entries change at ``step``."""
    if first:
        return num_active
    if schedule == "linear":
        fraction = (total_steps - step) / total_steps
    elif schedule == "cosine":
        fraction = (1.0 + math.cos(math.pi * step / total_steps)) / 2.0
    else:
        raise ValueError(f"unknown reselection schedule {schedule!r}")
    return max(0, min(num_active, int(rate * fraction * num_active)))


def smallest_magnitude_positions(values: Tensor, k: int) -> Tensor:
    """Positions of the ``k`` values closest to 0 (changed least from pretrained)."""
    return torch.topk(values.detach().float().abs(), k, largest=False, sorted=False).indices


def find_grad_scaler(optimizer):
    """The ``GradScaler`` a wrapper such as accelerate's ``AcceleratedOptimizer`` carries."""
    seen = optimizer
    while seen is not None:
        scaler = getattr(seen, "scaler", None)
        if scaler is not None and hasattr(scaler, "get_scale"):
            return scaler
        seen = getattr(seen, "optimizer", None)
    return None


class SftSelector:
    """Drives reselection: call :meth:`step` after every optimizer step.

    ``SftSelector(sft_model, optimizer, total_steps)``; ``optimizer`` is an :class:`SftAdamW`
    or :class:`SftSM3` (possibly wrapped, e.g. by accelerate) and ``total_steps`` the number of
    optimizer steps of the run (T in the schedule). Both may be left ``None`` and given later
    with :meth:`bind`, which :class:`sft.SftTrainerCallback` does from the Trainer.

    With gradient accumulation, call :meth:`step` once per optimizer step, not per micro-batch:
    candidate gradients of the micro-batches are summed into one step gradient.

    fp16 loss scaling: pass the ``torch.amp.GradScaler`` as ``grad_scaler`` (the Trainer's is
    found on accelerate's wrapped optimizer). The estimation phase then unscales what it
    accumulates, and drops the steps the scaler skips for inf/NaN gradients, so grown weights
    get Adam moments at the true gradient scale.
    """

    def __init__(self, model, optimizer=None, total_steps: int | None = None, grad_scaler=None):
        self.model = model
        self.config = model.sft_config
        self.optimizer = None
        self.total_steps = None
        self.grad_scaler = grad_scaler
        self.completed_steps = 0
        self.next_reselection = self.config.accumulation_steps
        self.last_replaced: dict[str, int] = {}
        self._step_scale: float | None = None  # loss scale of the optimizer step just taken
        self._since_log = {"dropped": 0, "grown": 0, "regrown": 0}
        self.bind(optimizer, total_steps)

    def bind(self, optimizer=None, total_steps: int | None = None) -> None:
        """Attach the optimizer and/or the run length (each only if not already set). A
        wrapped optimizer that carries a ``scaler`` (accelerate's, under fp16) also gives the
        selector its GradScaler."""
        if optimizer is not None and self.grad_scaler is None:
            self.grad_scaler = find_grad_scaler(optimizer)
        if optimizer is not None and self.optimizer is None:
            optimizer = unwrap_optimizer(optimizer)
            if self.config.selection == "ma" and not isinstance(optimizer, SftSM3):
                raise TypeError(
                    "SFT-MA ranks growth by SM3's accumulators: use SftSM3, got "
                    f"{type(optimizer).__name__}"
                )
            self.optimizer = optimizer
            # Called only when the optimizer really steps (a GradScaler skips inf/NaN steps),
            # before GradScaler.update() changes the scale.
            optimizer.register_step_pre_hook(self._before_optimizer_step)
        if total_steps is not None and self.total_steps is None:
            if int(total_steps) < 1:
                raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
            self.total_steps = int(total_steps)
            self._maybe_begin_estimation()

    @property
    def num_reselections(self) -> int:
        """Reselections so far (kept on the model, so it is saved with it)."""
        return self.model.num_reselections

    def _layers(self):
        return list(self.model.sft_layers())

    @property
    def estimating(self) -> bool:
        return any(layer.estimator is not None for _, layer in self._layers())

    def _maybe_begin_estimation(self) -> None:
        """Start SFT-AG's gradient-estimation phase if the next reselection is gamma steps
        away and will happen."""
        if self.config.selection != "ag" or self.estimating:
            return
        if self.completed_steps != self.next_reselection - self.config.accumulation_steps:
            return
        if not self._will_reselect(self.next_reselection):
            return
        for _, layer in self._layers():
            layer.estimator = CandidateEstimator(layer.num_active, layer.shape, layer.indices.dtype)

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self.grad_scaler is None or not self.estimating:
            self._step_scale = 1.0
        else:  # the scale the step's gradients carry (GradScaler.update() comes after)
            self._step_scale = float(self.grad_scaler.get_scale())

    def _fold_step_statistics(self, layers) -> None:
        """End the step in every estimating layer: unscaled, or discarded if the scaler
        skipped the optimizer step."""
        stepped, self._step_scale = self._step_scale, None
        for _, layer in layers:
            estimator = layer.estimator
            if estimator is None:
                continue
            if self.grad_scaler is None:
                estimator.end_step()
            elif stepped is None:
                estimator.discard_step()
            else:
                estimator.end_step(inv_scale=1.0 / stepped)

    def _will_reselect(self, step: int) -> bool:
        # Never after the last step, the first reselection included: with T == gamma it would
        # replace every index by a zero delta and the run would end at the pretrained model.
        return step < self.total_steps

    def step(self) -> None:
        """Advance one optimizer step; reselect when the schedule says so."""
        if self.optimizer is None or self.total_steps is None:
            raise RuntimeError(
                "SftSelector.step() needs the optimizer and total_steps: pass them to the "
                "constructor or to bind() (SftTrainerCallback does this at train begin)"
            )
        self.completed_steps += 1
        layers = self._layers()
        self._fold_step_statistics(layers)
        if self.completed_steps == self.next_reselection:
            if self._will_reselect(self.completed_steps):
                self.reselect()
            for _, layer in layers:
                layer.estimator = None
            self.next_reselection += self.config.reselection_steps
        self._maybe_begin_estimation()

    @torch.no_grad()
    def reselect(self) -> None:
        """Drop and grow in every layer now (normally called by :meth:`step`)."""
        first = self.num_reselections == 0
        self.model.num_reselections += 1
        self.last_replaced = {}
        for name, layer in self._layers():
            k = replacement_count(layer.num_active, self.completed_steps, self.total_steps,
                                  self.config.initial_reselection_rate, self.config.schedule,
                                  first)
            if k == 0:
                continue
            if self.config.selection == "ag":
                replaced = self._reselect_ag(layer, k)
            else:
                replaced = self._reselect_ma(layer, k)
            self.last_replaced[name] = replaced

    def _replace(self, layer: SftLinear, positions: Tensor, grown: Tensor,
                 seed: GrowthSeed | None) -> int:
        dropped = layer.indices[positions]
        self._since_log["dropped"] += positions.numel()
        self._since_log["grown"] += grown.numel()
        self._since_log["regrown"] += int(torch.isin(grown.to(dropped.dtype), dropped).sum())
        layer.indices[positions] = grown.to(layer.indices.dtype)
        layer.values[positions] = 0
        layer.grown_at[positions] = self.num_reselections
        if layer.values.grad is not None:
            layer.values.grad[positions] = 0
        self.optimizer.reset_state(layer.values, positions, seed, self.num_reselections)
        # Keep the index set sorted (the kernels store no permutation): values, grown_at, the
        # gradient and the optimizer's per-value state move with their indices.
        self.optimizer.permute_state(layer.values, layer.sort_entries())
        return positions.numel()

    def _reselect_ag(self, layer: SftLinear, k: int) -> int:
        estimator = layer.estimator
        if estimator is None or estimator.num_steps == 0:
            return 0  # this layer saw no gradient in the phase: keep its set
        dropped = smallest_magnitude_positions(layer.values, k)
        keep = torch.ones(layer.num_active, dtype=torch.bool, device=dropped.device)
        keep[dropped] = False
        still_active = layer.indices[keep]
        mean_grad, mean_sq_grad = estimator.moments()
        score = mean_grad.abs()
        score[torch.isin(estimator.candidates, still_active)] = -math.inf
        chosen = torch.topk(score, k, sorted=False).indices
        seed = GrowthSeed(mean_grad[chosen], mean_sq_grad[chosen], estimator.num_steps)
        return self._replace(layer, dropped, estimator.candidates[chosen], seed)

    def _reselect_ma(self, layer: SftLinear, k: int) -> int:
        dropped = smallest_magnitude_positions(layer.values, k)
        row_acc, col_acc = self.optimizer.accumulators(layer.values)
        numel = layer.shape[0] * layer.shape[1]
        # Exclude every currently active index, dropped ones included: their rows and columns
        # score high merely for holding active entries, so they would be regrown at once.
        # Only when that leaves too few positions, just-dropped ones are allowed back.
        if numel - layer.num_active >= k:
            excluded = layer.indices
        else:
            keep = torch.ones(layer.num_active, dtype=torch.bool, device=dropped.device)
            keep[dropped] = False
            excluded = layer.indices[keep]
        grown = top_outer_product(row_acc, col_acc, k, torch.sort(excluded.long()).values)
        return self._replace(layer, dropped, grown, None)

    # ---- what it did, for the Trainer's logs -----------------------------------------

    def step_of_reselection(self, iteration: int) -> int:
        """The optimizer step after which reselection ``iteration`` (1, 2, ...) happened."""
        if iteration <= 0:
            return 0
        return self.config.accumulation_steps + (iteration - 1) * self.config.reselection_steps

    @torch.no_grad()
    def log_entries(self) -> dict[str, float]:
        """Scalars that show SpIEL at work (``SftTrainer`` logs them to TensorBoard / W&B):

        - ``sft/reselections``: reselections so far;
        - ``sft/dropped``, ``sft/grown``, ``sft/regrown``: entries dropped and grown (over all
          matrices) by the reselections since the previous call, and how many of the grown
          ones had just been dropped (present only after a reselection);
        - ``sft/mean_abs_delta``: mean |delta| over all active entries;
        - ``sft/age_mean``, ``sft/age_median``, ``sft/age_max``: optimizer steps since each
          active entry was grown (the random initial ones count from step 0).
        """
        layers = self._layers()
        entries: dict[str, float] = {"sft/reselections": float(self.num_reselections)}
        if any(self._since_log.values()):
            entries.update({f"sft/{k}": float(v) for k, v in self._since_log.items()})
            self._since_log = dict.fromkeys(self._since_log, 0)
        if not layers:
            return entries
        total = sum(layer.num_active for _, layer in layers)
        abs_sum = sum(layer.values.detach().float().abs().sum() for _, layer in layers)
        entries["sft/mean_abs_delta"] = float(abs_sum) / max(total, 1)
        # Entries per reselection iteration (small integers): exact quantiles without a sort.
        per_layer = [torch.bincount(layer.grown_at.long().cpu()) for _, layer in layers]
        counts = torch.zeros(max(c.numel() for c in per_layer), dtype=torch.int64)
        for c in per_layer:
            counts[: c.numel()] += c
        iterations = torch.arange(counts.numel())
        steps = torch.tensor([self.step_of_reselection(int(i)) for i in iterations], dtype=torch.float64)
        ages = (self.completed_steps - steps).clamp_(min=0)
        weights = counts.double() / counts.sum()
        present = counts > 0
        order = torch.argsort(ages)  # ascending age
        cumulative = torch.cumsum(weights[order], 0)
        entries["sft/age_mean"] = float((weights * ages).sum())
        entries["sft/age_median"] = float(ages[order][int(torch.searchsorted(cumulative, 0.5))])
        entries["sft/age_max"] = float(ages[present].max())
        return entries

    # ---- resuming a run ---------------------------------------------------------------

    def save(self, directory) -> Path:
        """Write the schedule position and any estimation-phase statistics to
        ``directory/sft_selector.safetensors`` (between optimizer steps only). Save the model
        (``save_pretrained``) and the optimizer's ``state_dict`` beside it to resume a run."""
        tensors, phase_steps = {}, {}
        for name, layer in self._layers():
            estimator = layer.estimator
            if estimator is None or estimator.candidates is None:
                continue
            if estimator.in_middle_of_step:
                raise RuntimeError("SftSelector.save() between micro-batches of a step: save "
                                   "after the optimizer step and selector.step()")
            tensors[f"{name}.candidates"] = estimator.candidates.cpu()
            tensors[f"{name}.grad_sum"] = estimator.grad_sum.cpu()
            tensors[f"{name}.grad_sq_sum"] = estimator.grad_sq_sum.cpu()
            phase_steps[name] = estimator.num_steps
        metadata = {"completed_steps": str(self.completed_steps),
                    "next_reselection": str(self.next_reselection),
                    "num_reselections": str(self.num_reselections),
                    "total_steps": str(self.total_steps),
                    "phase_steps": json.dumps(phase_steps)}
        return atomic_save_safetensors(tensors, Path(directory) / SELECTOR_NAME, metadata)

    def load(self, directory) -> None:
        """Continue from a state written by :meth:`save` (into a selector built for the same
        model, with the model's deltas and the optimizer's state already restored)."""
        path = Path(directory) / SELECTOR_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no selector state at {path}")
        metadata, tensors = read_safetensors(path)
        try:
            total = metadata["total_steps"]
            completed = int(metadata["completed_steps"])
            next_reselection = int(metadata["next_reselection"])
            num_reselections = int(metadata["num_reselections"])
            phase_steps = json.loads(metadata["phase_steps"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}: bad or missing selector metadata ({err})") from None
        layers = dict(self._layers())
        unknown = sorted(set(phase_steps) - set(layers))
        if unknown:
            raise ValueError(f"{path}: statistics for layers this model lacks: {unknown[:4]}")
        self.completed_steps = completed
        self.next_reselection = next_reselection
        self.model.num_reselections = num_reselections
        if self.total_steps is None and total != "None":
            self.total_steps = int(total)
        for name, layer in layers.items():
            layer.estimator = None
            if name in phase_steps:
                device = layer.indices.device
                layer.estimator = CandidateEstimator.restore(
                    tensors[f"{name}.candidates"].to(device), tensors[f"{name}.grad_sum"].to(device),
                    tensors[f"{name}.grad_sq_sum"].to(device), int(phase_steps[name]), layer.shape)
        if self.total_steps is not None:
            self._maybe_begin_estimation()
