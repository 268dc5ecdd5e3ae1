"""A cost model to plan with: peak GPU memory (term by term) and step time relative to the
frozen floor of LoRA, SpIEL (SFT-AG, SFT-MA) and their 4-bit variants, from a model's
config.json and the method's facts alone (pure arithmetic on shapes and dtypes, torch-free).

    python -m analysis.cost_model --model meta-llama/Llama-2-7b-hf --method sft-ag --rank 64 \\
        --batch-size 1 --seq-len 2048 [--activation-checkpointing] [--4bit]
    python -m analysis.cost_model --validate-paper      # against the paper's Table 3
    python -m analysis.cost_model --validate-cpu        # against this machine's Table 3

`memory` owns the memory terms, `timing` the FLOP and byte counts, `validate` the comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis.cost_model.memory import (GIB, MemoryBreakdown, cuda_cap_gib, gpu_total_gib,
                                        peak_memory)
from analysis.cost_model.methods import TABLE3_METHODS, Method, Setup, floor_of
from analysis.cost_model.shapes import ModelShape, load_shape
from analysis.cost_model.timing import DEVICES, step_cost, time_vs_floor

__all__ = ["Method", "ModelShape", "Prediction", "Setup", "TABLE3_METHODS", "floor_of", "load_shape",
           "predict"]


@dataclass(frozen=True)
class Prediction:
    """``peak_gib``: the allocator's peak (allocated bytes); ``above_floor_gib``: that over the
    frozen floor's at the same setup; on CUDA ``cap_gib`` (the paper's minimal
    set_per_process_memory_fraction cap) and ``gpu_total_gib`` (with the allocator's overhead
    and the CUDA context: what a job must ask for)."""

    memory: MemoryBreakdown
    floor: MemoryBreakdown
    peak_gib: float
    above_floor_gib: float
    cap_gib: float | None
    gpu_total_gib: float | None
    time_vs_floor: float
    step_s: float


def predict(shape: ModelShape, method: Method, setup: Setup, device: str | None = None,
            paper_code: bool = False, paged_optimizer: bool = False) -> Prediction:
    """``device``: a key of ``timing.DEVICES`` for the time (default: "a100" on CUDA, "cpu")."""
    device = device or ("a100" if setup.device == "cuda" else "cpu")
    if device not in DEVICES:
        raise ValueError(f"unknown device profile {device!r}; known: {sorted(DEVICES)}")
    own = peak_memory(shape, method, setup, paper_code, paged_optimizer)
    floor = peak_memory(shape, floor_of(method), setup)
    cuda = setup.device == "cuda"
    return Prediction(own, floor, own.peak / GIB, (own.peak - floor.peak) / GIB,
                      cuda_cap_gib(own) if cuda else None, gpu_total_gib(own) if cuda else None,
                      time_vs_floor(shape, method, setup, DEVICES[device]),
                      step_cost(shape, method, setup, DEVICES[device]).seconds)
