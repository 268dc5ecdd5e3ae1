"""Exact peaks of allocated tensor bytes on CPU: the counterpart of CUDA's
``max_memory_allocated``, per region of a training step.

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
"""
from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch._C._autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

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
