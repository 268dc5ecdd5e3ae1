"""Interleaved median timing and a record of the machine's state, shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_medians(
    contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds per call of each contender, timed round-robin.

    Interleaving (and rotating who goes first) spreads other processes' load evenly over the
    contenders, so their ratio is fair even when absolute times drift on a shared machine.
    ``clock="cpu"`` counts this process's CPU seconds instead of wall seconds: with one thread
    it ignores time spent descheduled by other processes' load.
    """
    now = CLOCKS[clock]
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            start = now()
            contenders[name]()
            samples[name].append(now() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def machine_line() -> str:
    """One line naming what the numbers were measured on: CPU count, threads, torch, load."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average (1/5/15 min) {load}"
    )
