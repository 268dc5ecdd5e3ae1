"""The paper's CUDA memory measurement as a pure search over a "does it fit under this cap" oracle.

Appendix C of the paper: cap the process with ``torch.cuda.set_per_process_memory_fraction``,
binary-search the lowest cap (1 GiB granularity) at which 30 training steps still complete.
The search is kept free of torch and processes so that it can be tested without a GPU: the
oracle is any callable ``cap_gib -> "ok" | "oom"``. On CUDA the oracle is one fresh measuring
process per probe (:func:`finetune.profiling.runner.cuda_fits`).

Written by hand: no library searches a memory cap. Two facts shape it:
- a probe that completes is proof that the cap suffices; an OOM may be flaky (allocator
  fragmentation, nondeterministic kernels), so an OOM is retried before it counts as "too small";
- any other failure is a bug, not a memory verdict, so it propagates instead of being read as
  "needs more memory".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

OK = "ok"
OOM = "oom"


@dataclass(frozen=True)
class Probe:
    cap_gib: float
    outcome: str


@dataclass
class CapSearch:
    """Result: the smallest cap (GiB) that completed, or None with the reason it never did."""

    cap_gib: float | None
    granularity_gib: float
    probes: list[Probe] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict:
        return {"cap_gib": self.cap_gib, "granularity_gib": self.granularity_gib,
                "probes": [[p.cap_gib, p.outcome] for p in self.probes], "reason": self.reason}


def search_min_cap(fits: Callable[[float], str], max_gib: float, granularity_gib: float = 1.0,
                   oom_retries: int = 1) -> CapSearch:
    """Smallest multiple of ``granularity_gib`` up to ``max_gib`` under which ``fits`` says "ok".

    ``max_gib`` is the device's total memory; the search first checks that the run fits at
    all (the largest multiple of the granularity not above it), then bisects below it. Each
    cap costs one call when it fits and up to ``1 + oom_retries`` calls when it does not.
    Assumes that fitting is monotone in the cap, which holds up to flaky OOMs.
    """
    if granularity_gib <= 0:
        raise ValueError(f"granularity_gib must be positive, got {granularity_gib}")
    if oom_retries < 0:
        raise ValueError(f"oom_retries must be >= 0, got {oom_retries}")
    top = math.floor(max_gib / granularity_gib + 1e-9)
    result = CapSearch(None, granularity_gib)
    if top < 1:
        result.reason = f"device memory {max_gib} GiB is below one granularity step ({granularity_gib} GiB)"
        return result

    def cap(units: int) -> float:
        return round(units * granularity_gib, 9)

    def probe(units: int) -> bool:
        for _ in range(1 + oom_retries):
            outcome = fits(cap(units))
            if outcome not in (OK, OOM):
                raise ValueError(f"memory oracle returned {outcome!r} at cap {cap(units)} GiB; "
                                 f"expected {OK!r} or {OOM!r}")
            result.probes.append(Probe(cap(units), outcome))
            if outcome == OK:
                return True
        return False

    if not probe(top):
        result.reason = f"out of memory even at the full {cap(top)} GiB"
        return result
    lo, hi = 0, top  # invariant: lo is known (or assumed, for 0) too small, hi is known to fit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            hi = mid
        else:
            lo = mid
    result.cap_gib = cap(hi)
    return result
