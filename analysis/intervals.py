"""95% intervals for a table cell and paired comparisons of two methods on the same items.

A score is a statistic of per-item values (`ItemScores`): a mean (accuracy, F1, pass@k), a
ratio of sums (held-out loss = nats / tokens, answer bits per byte = bits / bytes), or a macro
average over groups (BBH subtasks, TyDiQA languages) of either. Several seeds of one cell are
runs on the same items; their score is the mean of the seeds' scores.

Intervals: Wilson's for a plain accuracy of one run (scipy); otherwise a seeded percentile
bootstrap over items. The bootstrap is written here with numpy because scipy.stats.bootstrap
resamples neither within strata (each macro-average group keeps its size) nor one item draw
shared by several runs (seeds, and the two sides of a paired comparison), and gives no p-value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0
_CHUNK_ELEMENTS = 4_000_000  # resampled values held at once (bounds memory on large benchmarks)


class ItemMismatch(ValueError):
    """Runs to be compared item by item were not scored on the same items."""


@dataclass(frozen=True)
class ItemScores:
    """One run's per-item values of one score.

    `denominators`: the score is sum(values) / sum(denominators) (else the mean of values).
    `groups`: the score is the mean over groups of each group's score (a macro average).
    `binary`: values are 0/1 correctness (a Wilson interval and McNemar's test apply)."""

    ids: tuple[str, ...]
    values: np.ndarray
    denominators: np.ndarray | None = None
    groups: tuple[str, ...] | None = None
    binary: bool = False

    def __post_init__(self):
        n = len(self.ids)
        if n == 0:
            raise ValueError("ItemScores: no items")
        if len(set(self.ids)) != n:
            raise ValueError("ItemScores: item ids repeat, so items cannot be matched by id")
        for name in ("values", "denominators", "groups"):
            part = getattr(self, name)
            if part is not None and len(part) != n:
                raise ValueError(f"ItemScores: {len(part)} {name} for {n} items")
        if self.denominators is not None and not np.all(np.asarray(self.denominators) > 0):
            raise ValueError("ItemScores: a ratio score needs positive denominators")

    def aligned(self, ids: tuple[str, ...]) -> ItemScores:
        """The same items in the order `ids` (which must hold exactly this run's items)."""
        if ids == self.ids:
            return self
        where = {item: i for i, item in enumerate(self.ids)}
        order = np.array([where[i] for i in ids])
        return ItemScores(tuple(ids), np.asarray(self.values)[order],
                          None if self.denominators is None else np.asarray(self.denominators)[order],
                          None if self.groups is None else tuple(self.groups[i] for i in order),
                          self.binary)

    def score(self) -> float:
        return float(_statistic(self, [p[None, :] for p in _positions(self)])[0])


@dataclass(frozen=True)
class Difference:
    """A method's score minus the reference's on the same items, with its interval and p-value."""

    value: float
    low: float
    high: float
    p_value: float
    test: str
    n_items: int


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's binomtest)."""
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence,
                                                         method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes: a binomial test of the discordant
    pairs (one right, the other wrong) against 1/2; 1.0 when no pair is discordant."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def common_ids(runs: list[ItemScores]) -> tuple[str, ...]:
    """The item ids every run shares, in the first run's order; ItemMismatch where they differ."""
    first = set(runs[0].ids)
    for run in runs[1:]:
        if set(run.ids) != first:
            extra, missing = set(run.ids) - first, first - set(run.ids)
            raise ItemMismatch(f"different items: {len(missing)} missing, {len(extra)} extra "
                               f"(e.g. {sorted(missing | extra)[:3]})")
    return runs[0].ids


def interval(runs: list[ItemScores], confidence: float = CONFIDENCE,
             n_resamples: int = N_RESAMPLES, seed: int = SEED) -> tuple[float, float, str]:
    """(low, high, method) of the mean over `runs` (seeds, on the same items) of their score:
    Wilson for one run's plain accuracy, else the percentile bootstrap over items."""
    if len(runs) == 1 and _zero_one(runs[0]) and len(_strata(runs[0])) == 1:
        values = np.asarray(runs[0].values)
        return (*wilson_interval(int(values.sum()), len(values), confidence), "wilson")
    reps = _replicates([runs], n_resamples, seed)[0]
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high), "bootstrap"


def paired_difference(runs: list[ItemScores], reference: list[ItemScores],
                      confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> Difference:
    """mean score of `runs` minus that of `reference` (each a list of seeds), all on the same
    items. Interval: paired bootstrap (one item draw for both sides). p-value: McNemar's exact
    test where both sides are one run of 0/1 outcomes, else the bootstrap's two-sided p
    (twice the smaller share of resampled differences on either side of zero)."""
    ids = common_ids(runs + reference)
    runs = [r.aligned(ids) for r in runs]
    reference = [r.aligned(ids) for r in reference]
    value = np.mean([r.score() for r in runs]) - np.mean([r.score() for r in reference])
    ours, theirs = _replicates([runs, reference], n_resamples, seed)
    diffs = ours - theirs
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    if len(runs) == len(reference) == 1 and runs[0].binary and reference[0].binary:
        p, test = mcnemar_exact(runs[0].values, reference[0].values), "McNemar exact"
    else:
        below = (np.sum(diffs <= 0) + 1) / (n_resamples + 1)
        above = (np.sum(diffs >= 0) + 1) / (n_resamples + 1)
        p, test = min(1.0, 2 * min(below, above)), "paired bootstrap"
    return Difference(float(value), float(low), float(high), float(p), test, len(ids))


def _zero_one(run: ItemScores) -> bool:
    """Right/wrong per item: declared binary, or a mean of values that all happen to be 0 or 1
    (pass@1 of one completion each, or every problem failed): a binomial proportion, whose
    percentile bootstrap would collapse to a point when every value is the same."""
    values = np.asarray(run.values)
    return run.binary or (run.denominators is None and bool(np.isin(values, (0.0, 1.0)).all()))


def _positions(run: ItemScores) -> list[np.ndarray]:
    """Item positions of each group (one group when the score is no macro average)."""
    if run.groups is None:
        return [np.arange(len(run.ids))]
    labels = np.asarray(run.groups)
    return [np.flatnonzero(labels == g) for g in dict.fromkeys(run.groups)]


def _strata(run: ItemScores) -> list[np.ndarray]:
    """The bootstrap's strata: the groups, except with one item in every group (BBH at
    `n_per_task: 1`), where resampling within groups would repeat every item (a zero-width
    interval): the macro average is then the plain mean, and all items form one stratum."""
    groups = _positions(run)
    return [np.arange(len(run.ids))] if max(len(g) for g in groups) == 1 else groups


def _statistic(run: ItemScores, draws: list[np.ndarray]) -> np.ndarray:
    """The score of each resample: `draws[g]` is (resamples, items of group g) positions."""
    values = np.asarray(run.values, dtype=float)
    per_group = []
    for draw in draws:
        if run.denominators is None:
            per_group.append(values[draw].mean(axis=1))
        else:
            den = np.asarray(run.denominators, dtype=float)
            per_group.append(values[draw].sum(axis=1) / den[draw].sum(axis=1))
    return np.mean(per_group, axis=0)


def _replicates(sides: list[list[ItemScores]], n_resamples: int, seed: int) -> list[np.ndarray]:
    """Bootstrap replicates of each side's mean-over-runs score, every run resampled with the
    same item draws (within each group, so a macro average keeps its groups' sizes)."""
    runs = [r for side in sides for r in side]
    ids = common_ids(runs)
    sides = [[r.aligned(ids) for r in side] for side in sides]
    groups = sides[0][0].groups
    if any(r.groups != groups for side in sides for r in side):
        raise ValueError("runs on the same items group them differently")
    positions = _strata(sides[0][0])
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // len(ids))
    out: list[list[np.ndarray]] = [[] for _ in sides]
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = [pos[rng.integers(0, len(pos), size=(size, len(pos)))] for pos in positions]
        for i, side in enumerate(sides):
            out[i].append(np.mean([_statistic(r, draws) for r in side], axis=0))
    return [np.concatenate(parts) for parts in out]
