"""Exact peaks of allocated tensor bytes, and on CUDA what was live at the peak.

On CPU: the counterpart of CUDA's ``max_memory_allocated``, per region of a training step.

CPU tensors have no allocator statistics, and the peak RSS adds the Python heap, pages the
allocator keeps after a free and whatever the process loaded, so it cannot check a byte-level
memory model. torch.profiler's memory events (``profile_memory=True``) record every
allocation and free of the CPU allocator with its size and time: their running sum is the
live tensor bytes at every moment, exactly. torch exposes the events but no peak over them
(its memory timeline export is CUDA-minded and categorises rather than sums), hence this
module. The profiler slows every op: take memory and time in separate runs.

Regions are ``torch.profiler.record_function`` ranges (``finetune.profiling.measure`` marks
each step's forward, backward and optimizer step; torch's optimizers mark their own ``step``).
Live bytes count from the moment tracing starts, so build the model inside the trace.

On CUDA the caching allocator records its own history with stacks; :func:`cuda_peak_sites`
replays it to the peak and sums the live blocks by the code that made them, so that a GPU
measurement above the cost model's prediction says where the difference lives.
"""
from __future__ import annotations

import bisect
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch._C._autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from artifacts.atomic import atomic_path

MEMORY_EVENT = "[memory]"


@dataclass
class AllocationTrace:
    """Live bytes after every allocation or free (``times`` ascending, ns), and the time
    ranges of every named region."""

    times: list[int] = field(default_factory=list)
    live: list[int] = field(default_factory=list)
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events) -> "AllocationTrace":
        changes, ranges = [], {}
        for event in events:
            name = event.name()
            if name == MEMORY_EVENT:
                if event.device_type() == DeviceType.CPU:
                    changes.append((event.start_ns(), event.nbytes()))
            else:
                ranges.setdefault(name, []).append((event.start_ns(), event.start_ns() + event.duration_ns()))
        changes.sort()
        times, live, total = [], [], 0
        for at, nbytes in changes:
            total += nbytes
            times.append(at)
            live.append(total)
        for spans in ranges.values():
            spans.sort()
        return cls(times, live, ranges)

    def regions(self, prefix: str) -> list[tuple[int, int]]:
        """Every range of every region whose name starts with ``prefix``, in time order."""
        return sorted(span for name, spans in self.ranges.items() if name.startswith(prefix)
                      for span in spans)

    def live_at(self, at_ns: int) -> int:
        """Live bytes just before ``at_ns`` (0 before the first event)."""
        i = bisect.bisect_left(self.times, at_ns)
        return self.live[i - 1] if i else 0

    def peak(self, start_ns: int, end_ns: int) -> int:
        """The most bytes live at any moment of [start_ns, end_ns]."""
        lo, hi = bisect.bisect_left(self.times, start_ns), bisect.bisect_right(self.times, end_ns)
        return max([self.live_at(start_ns), *self.live[lo:hi]])

    def peaks(self, prefix: str) -> list[int]:
        """The peak of each range of the regions named ``prefix...``, in time order."""
        return [self.peak(start, end) for start, end in self.regions(prefix)]


class _Tracing:
    trace: AllocationTrace | None = None


@contextmanager
def trace_allocations() -> Iterator[_Tracing]:
    """``with trace_allocations() as t: ...``; then ``t.trace`` is the block's
    :class:`AllocationTrace`. CPU tensors only."""
    holder = _Tracing()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield holder
    holder.trace = AllocationTrace.from_events(prof.profiler.kineto_results.events())


# ---- CUDA: the caching allocator's own history -------------------------------------------

def record_cuda_history(max_entries: int = 1_000_000) -> int:
    """Start recording every CUDA allocation and free with its Python stack
    (``torch.cuda.memory._record_memory_history``, the data behind pytorch.org/memory_viz);
    returns the bytes already allocated, the baseline :func:`cuda_peak_sites` adds."""
    torch.cuda.memory._record_memory_history(enabled="all", context="alloc", stacks="python",
                                             max_entries=max_entries)
    return torch.cuda.memory_allocated()


def stop_cuda_history(path=None) -> dict:
    """Stop recording; the recorded history, also written to ``path`` if given (a pickle that
    memory_viz opens)."""
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            tmp.write_bytes(pickle.dumps(snapshot))
    return snapshot


def _site(frames: list[dict]) -> str:
    """Where an allocation was made: its innermost Python frame outside torch itself."""
    for frame in frames:
        name = frame.get("filename", "")
        if "/torch/" not in name and not name.startswith("<"):
            short = name.split("site-packages/")[-1]
            return f"{short}:{frame.get('line')} {frame.get('name')}"
    return "torch internals" if frames else "no stack"


def cuda_peak_sites(snapshot: dict, baseline: int, device: int = 0, top: int = 12,
                    max_entries: int | None = None) -> dict:
    """The peak of allocated bytes in a recorded history and what was live then, by the site
    that made it: ``{"peak_bytes", "before_recording_bytes", "sites": [[site, bytes], ...]}``
    (blocks made before recording began count in ``before_recording_bytes``, not in a site).

    Replays the allocator's trace: "alloc" adds a block, "free_requested" (when the
    allocated-bytes statistic drops) removes it; ``baseline`` is what was allocated when
    recording began (:func:`record_cuda_history`). A history as long as ``max_entries`` may
    have lost its start, and with it what the replay counts from: refused."""
    trace = snapshot["device_traces"][device]
    if max_entries is not None and len(trace) >= max_entries:
        raise ValueError(f"the history filled its {max_entries} entries and lost its start: "
                         "record fewer steps or raise max_entries")
    live: dict[int, tuple[int, str]] = {}
    total = peak = before = baseline
    at_peak: dict[int, tuple[int, str]] = {}
    for event in trace:
        action = event["action"]
        if action == "alloc":
            live[event["addr"]] = (event["size"], _site(event.get("frames", [])))
            total += event["size"]
            if total > peak:
                peak, at_peak, before = total, dict(live), total - sum(b for b, _ in live.values())
        elif action == "free_requested":
            total -= live.pop(event["addr"])[0] if event["addr"] in live else event["size"]
    sites: dict[str, int] = {}
    for size, site in at_peak.values():
        sites[site] = sites.get(site, 0) + size
    ranked = sorted(sites.items(), key=lambda item: -item[1])
    return {"peak_bytes": peak, "before_recording_bytes": before,
            "sites": [[site, size] for site, size in ranked[:top]]}
