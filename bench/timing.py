"""Interleaved timing, per-round ratios with their spread, and a record of the machine's state,
shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_samples(
    contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, clock: str = "wall"
) -> dict[str, list[float]]:
    """Seconds of each call of each contender, ``repeats`` rounds timed round-robin.

    Interleaving (and rotating who goes first) spreads other processes' load evenly over the
    contenders, so a ratio taken within one round compares them under the same conditions.
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
    return samples


def interleaved_medians(
    contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds per call of each contender (see :func:`interleaved_samples`)."""
    samples = interleaved_samples(contenders, repeats, warmup, clock)
    return {name: statistics.median(times) for name, times in samples.items()}


def round_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """``numerator[i] / denominator[i]`` for every round both were timed in."""
    return [a / b for a, b in zip(numerator, denominator)]


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max) of ``values``."""
    return min(values), statistics.median(values), max(values)


def format_spread(values: Sequence[float], digits: int = 2, unit: str = "") -> str:
    """``median [min-max]``, the way the benchmark tables print a measured quantity."""
    lo, mid, hi = spread(values)
    return f"{mid:.{digits}f}{unit} [{lo:.{digits}f}-{hi:.{digits}f}]"


def machine_line() -> str:
    """One line naming what the numbers were measured on: CPU count, threads, torch, load."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs ({_cpu_model()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average (1/5/15 min) {load}"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
