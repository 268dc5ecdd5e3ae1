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
from .growth import top_outer_products
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
    """Positions of the ``k`` values closest to 0 (changed least from pretrained), per row of
    a stack of matrices' values."""
    return torch.topk(values.detach().float().abs(), k, dim=-1, largest=False, sorted=False).indices


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

    ``micro_batches_per_step`` (:class:`sft.SftTrainerCallback` gives the Trainer's
    ``gradient_accumulation_steps``): 1 lets SFT-AG's estimation fold each step's candidate
    gradient into its statistics as it is made, instead of keeping it (4 bytes per candidate)
    until the optimizer steps; the numbers are the same.

    fp16 loss scaling: pass the ``torch.amp.GradScaler`` as ``grad_scaler`` (the Trainer's is
    found on accelerate's wrapped optimizer). The estimation phase then unscales what it
    accumulates, and drops the steps the scaler skips for inf/NaN gradients, so grown weights
    get Adam moments at the true gradient scale.
    """

    def __init__(self, model, optimizer=None, total_steps: int | None = None, grad_scaler=None,
                 micro_batches_per_step: int | None = None):
        self.model = model
        self.config = model.sft_config
        self.optimizer = None
        self.total_steps = None
        self.grad_scaler = grad_scaler
        self.micro_batches_per_step = micro_batches_per_step
        self.completed_steps = 0
        self.next_reselection = self.config.accumulation_steps
        self.last_replaced: dict[str, int] = {}
        self._since_log = {"dropped": 0, "grown": 0}
        self._regrown: list[Tensor] = []  # per reselected batch, on the device
        self.bind(optimizer, total_steps)

    def bind(self, optimizer=None, total_steps: int | None = None,
             micro_batches_per_step: int | None = None) -> None:
        """Attach the optimizer, the run length and/or the micro-batches per optimizer step
        (each only if not already set). A wrapped optimizer that carries a ``scaler``
        (accelerate's, under fp16) also gives the selector its GradScaler."""
        if micro_batches_per_step is not None and self.micro_batches_per_step is None:
            if int(micro_batches_per_step) < 1:
                raise ValueError(f"micro_batches_per_step must be >= 1, got {micro_batches_per_step!r}")
            self.micro_batches_per_step = int(micro_batches_per_step)
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
        for _, layer in self._layers():  # a phase begun before this bind, between steps
            if layer.estimator is not None and not layer.estimator.in_middle_of_step:
                layer.estimator.fold_each_micro_batch = self._fold_each_micro_batch

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
            layer.estimator = CandidateEstimator(layer.num_active, layer.shape, layer.indices.dtype,
                                                 self._fold_each_micro_batch)

    @property
    def _fold_each_micro_batch(self) -> bool:
        """A step's candidate gradient may be folded as it is made: one micro-batch a step,
        and no GradScaler that might skip the step or unscale it afterwards."""
        return self.micro_batches_per_step == 1 and self.grad_scaler is None

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        """The optimizer is about to step (a GradScaler skips inf/NaN steps, and this hook with
        them): fold the step's candidate gradients into the estimation statistics now, unscaled
        by the scale they carry (GradScaler.update() comes after), so that their 4 bytes per
        candidate are freed before the optimizer's own temporaries are made."""
        if self.config.selection != "ag":
            return
        scale = None if self.grad_scaler is None else float(self.grad_scaler.get_scale())
        for _, layer in self._layers():
            if layer.estimator is not None:
                layer.estimator.end_step(inv_scale=None if scale is None else 1.0 / scale)

    def _fold_step_statistics(self, layers) -> None:
        """End the step in every estimating layer the optimizer's step did not end: discarded
        if a GradScaler skipped it; without a scaler (an optimizer stepped outside its
        ``step``), folded as is."""
        for _, layer in layers:
            estimator = layer.estimator
            if estimator is None or not estimator.in_middle_of_step:
                continue
            if self.grad_scaler is None:
                estimator.end_step()
            else:
                estimator.discard_step()

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

    # ---- reselection: layers of one shape are selected together (see sft.growth) --------

    @torch.no_grad()
    def reselect(self) -> None:
        """Drop and grow in every layer now (normally called by :meth:`step`). Layers of one
        shape are selected as one batch; the host waits on the device a fixed number of times
        per batch, not per layer (on a GPU each wait stalls the launch queue)."""
        first = self.num_reselections == 0
        self.model.num_reselections += 1
        self.last_replaced = {}
        batches: dict[tuple, list[tuple[str, SftLinear]]] = {}
        for name, layer in self._layers():
            k = replacement_count(layer.num_active, self.completed_steps, self.total_steps,
                                  self.config.initial_reselection_rate, self.config.schedule,
                                  first)
            if k == 0:
                continue
            key = (layer.shape, layer.num_active, k, layer.values.dtype, layer.values.device)
            if self.config.selection == "ag":
                estimator = layer.estimator
                if estimator is None or estimator.num_steps == 0:
                    self.last_replaced[name] = 0  # it saw no gradient in the phase: keep its set
                    continue
                key += (estimator.candidates.numel(),)
            batches.setdefault(key, []).append((name, layer))
        select = self._reselect_ag if self.config.selection == "ag" else self._reselect_ma
        for (_, _, k, *_), members in batches.items():
            layers = [layer for _, layer in members]
            dropped, grown, seeds = select(layers, k)
            self._count_replaced(layers, dropped, grown)
            for (name, layer), positions, new, seed in zip(members, dropped, grown, seeds):
                self.last_replaced[name] = self._replace(layer, positions, new, seed)

    def _replace(self, layer: SftLinear, positions: Tensor, grown: Tensor,
                 seed: GrowthSeed | None) -> int:
        layer.indices[positions] = grown.to(layer.indices.dtype)
        layer.values[positions] = 0
        layer.set_grown_at(self.num_reselections, positions)
        if layer.values.grad is not None:
            layer.values.grad[positions] = 0
        self.optimizer.reset_state(layer.values, positions, seed, self.num_reselections)
        # Keep the index set sorted (the kernels store no permutation): values, grown_at, the
        # gradient and the optimizer's per-value state move with their indices.
        self.optimizer.permute_state(layer.values, layer.sort_entries())
        return positions.numel()

    def _reselect_ag(self, layers: list[SftLinear], k: int):
        """SFT-AG for layers of one shape: (dropped positions [B, k], grown indices, seeds)."""
        estimators = [layer.estimator for layer in layers]
        dropped = smallest_magnitude_positions(torch.stack([layer.values for layer in layers]), k)
        indices = torch.stack([layer.indices for layer in layers]).long()
        is_dropped = torch.zeros_like(indices, dtype=torch.bool).scatter_(1, dropped, True)
        candidates = torch.stack([estimator.candidates for estimator in estimators]).long()
        at = torch.searchsorted(indices, candidates).clamp_(max=indices.shape[1] - 1)  # sorted
        still_active = (indices.gather(1, at) == candidates) & ~is_dropped.gather(1, at)
        moments = [estimator.moments() for estimator in estimators]
        mean_grad = torch.stack([mean for mean, _ in moments])
        mean_sq_grad = torch.stack([mean_sq for _, mean_sq in moments])
        chosen = torch.topk(mean_grad.abs().masked_fill(still_active, -math.inf), k, dim=1,
                            sorted=False).indices
        seeds = [GrowthSeed(mean, mean_sq, estimator.num_steps) for mean, mean_sq, estimator
                 in zip(mean_grad.gather(1, chosen), mean_sq_grad.gather(1, chosen), estimators)]
        return dropped, list(candidates.gather(1, chosen)), seeds

    def _reselect_ma(self, layers: list[SftLinear], k: int):
        """SFT-MA for layers of one shape: (dropped positions [B, k], grown indices, seeds)."""
        dropped = smallest_magnitude_positions(torch.stack([layer.values for layer in layers]), k)
        indices = torch.stack([layer.indices for layer in layers]).long()
        num_active = indices.shape[1]
        numel = layers[0].shape[0] * layers[0].shape[1]
        # Exclude every currently active index, dropped ones included: their rows and columns
        # score high merely for holding active entries, so they would be regrown at once.
        # Only when that leaves too few positions, just-dropped ones are allowed back (moved
        # past the end by a sort, then cut off). Layers keep their indices sorted.
        if numel - num_active >= k:
            excluded = indices
        else:
            marked = indices.scatter(1, dropped, numel)
            excluded = torch.sort(marked, dim=1).values[:, : num_active - k]
        accumulators = [self.optimizer.accumulators(layer.values) for layer in layers]
        grown = top_outer_products(torch.stack([row for row, _ in accumulators]),
                                   torch.stack([col for _, col in accumulators]),
                                   [k] * len(layers), list(excluded))
        return dropped, grown, [None] * len(layers)

    def _count_replaced(self, layers: list[SftLinear], dropped: Tensor, grown: list[Tensor]) -> None:
        """Add a batch to the logged counts; how many grown entries had just been dropped stays
        on the device until :meth:`log_entries`."""
        old = torch.sort(torch.stack([layer.indices for layer in layers]).long().gather(1, dropped),
                         dim=1).values
        new = torch.stack(grown).long()
        at = torch.searchsorted(old, new).clamp_(max=old.shape[1] - 1)
        self._since_log["dropped"] += dropped.numel()
        self._since_log["grown"] += new.numel()
        self._regrown.append((old.gather(1, at) == new).sum())

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
        regrown, self._regrown = self._regrown, []
        if not layers:
            return entries
        # Everything the host needs from the device comes back in one copy: the |delta| sum,
        # the entries per reselection iteration (small integers: exact quantiles without a
        # sort) and the regrown count.
        device = layers[0][1].values.device
        num_iterations = self.num_reselections + 1  # grown_at lies in [0, num_reselections]
        abs_sum = torch.zeros((), dtype=torch.float64, device=device)
        counts = torch.zeros(num_iterations, dtype=torch.long, device=device)
        for _, layer in layers:
            grown_at = layer.grown_at.long()
            abs_sum += layer.values.detach().double().abs().sum().to(device)
            per_layer = torch.zeros(num_iterations, dtype=torch.long, device=grown_at.device)
            counts += per_layer.scatter_add_(0, grown_at, torch.ones_like(grown_at)).to(device)
        regrown_sum = sum((r.to(device) for r in regrown), torch.zeros((), dtype=torch.long, device=device))
        fetched = torch.cat([abs_sum[None], regrown_sum[None].double(), counts.double()]).cpu()
        if self._since_log["dropped"] or self._since_log["grown"]:
            entries.update({f"sft/{k}": float(v) for k, v in self._since_log.items()})
            entries["sft/regrown"] = float(fetched[1])
            self._since_log = dict.fromkeys(self._since_log, 0)
        total = sum(layer.num_active for _, layer in layers)
        entries["sft/mean_abs_delta"] = float(fetched[0]) / max(total, 1)
        counts = fetched[2:].long()
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
                layer.estimator.fold_each_micro_batch = self._fold_each_micro_batch
        if self.total_steps is not None:
            self._maybe_begin_estimation()
