"""A cost model to plan with: peak GPU memory (term by term) and step time relative to the
frozen floor of LoRA, SpIEL (SFT-AG, SFT-MA) and their 4-bit variants, from a model's
config.json and the method's facts alone (pure arithmetic on shapes and dtypes, torch-free).

    python -m analysis.cost_model --model meta-llama/Llama-2-7b-hf --method sft-ag --rank 64 \\
        --batch-size 1 --seq-len 2048 [--activation-checkpointing] [--4bit]
    python -m analysis.cost_model --validate-paper      # against the paper's Table 3
    python -m analysis.cost_model --validate-cpu        # against this machine's Table 3

`layout` holds SpIEL's bytes and kernels per entry and layer, `memory` the memory terms, `timing`
the FLOP, byte and launch counts, `validate` the comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis.cost_model.memory import (GIB, MemoryBreakdown, cuda_cap_gib, gpu_total_gib,
                                        peak_memory)
from analysis.cost_model.layout import DEFAULT_LAYOUT, LAYOUTS, SpielLayout, layout as get_layout
from analysis.cost_model.methods import TABLE3_METHODS, Method, Setup, floor_of
from analysis.cost_model.shapes import ModelShape, load_shape
from analysis.cost_model.timing import DEVICES, dispatcher_path, step_cost

__all__ = ["DEFAULT_LAYOUT", "LAYOUTS", "Method", "ModelShape", "Prediction", "Setup", "TABLE3_METHODS", "floor_of", "load_shape",
           "predict"]


@dataclass(frozen=True)
class Prediction:
    """``peak_gib``: the allocator's peak (allocated bytes); ``above_floor_gib``: that over the
    frozen floor's at the same setup; on CUDA ``cap_gib`` (the paper's minimal
    set_per_process_memory_fraction cap) and ``gpu_total_gib`` (with the allocator's overhead
    and the CUDA context: what a job must ask for). Time: ``step_s`` a plain step,
    ``mean_step_s`` averaged over a reselection period (SpIEL's estimation and reselection
    included), ``reselection_s`` one reselection; ``time_vs_floor`` the mean step over the
    floor's, ``plain_time_vs_floor`` the plain one; ``delta_grad`` the dispatcher's path."""

    memory: MemoryBreakdown
    floor: MemoryBreakdown
    peak_gib: float
    above_floor_gib: float
    cap_gib: float | None
    gpu_total_gib: float | None
    time_vs_floor: float
    plain_time_vs_floor: float
    step_s: float
    mean_step_s: float
    reselection_s: float
    host_s: float
    delta_grad: str
    layout: str


def predict(shape: ModelShape, method: Method, setup: Setup, device: str | None = None,
            layout: "str | SpielLayout" = DEFAULT_LAYOUT, delta_grad: str | None = None,
            paged_optimizer: bool = False) -> Prediction:
    """``device``: a key of ``timing.DEVICES`` (default: "a100" on CUDA, "cpu"); ``layout``:
    SpIEL's (``layout.LAYOUTS``: "compact", "plans", "paper"); ``delta_grad``: force the
    delta gradient's path ("dense", "sddmm"; default: the dispatcher's on that device)."""
    device = device or ("a100" if setup.device == "cuda" else "cpu")
    if device not in DEVICES:
        raise ValueError(f"unknown device profile {device!r}; known: {sorted(DEVICES)}")
    if delta_grad not in (None, "dense", "sddmm"):
        raise ValueError(f"delta_grad must be 'dense' or 'sddmm', got {delta_grad!r}")
    profile, spiel = DEVICES[device], get_layout(layout)
    path = delta_grad or dispatcher_path(shape, method, profile)
    own = peak_memory(shape, method, setup, spiel, path, paged_optimizer)
    floor = peak_memory(shape, floor_of(method), setup)
    cuda = setup.device == "cuda"
    cost = step_cost(shape, method, setup, profile, spiel, path)
    floor_s = step_cost(shape, floor_of(method), setup, profile).seconds
    return Prediction(own, floor, own.peak / GIB, (own.peak - floor.peak) / GIB,
                      cuda_cap_gib(own) if cuda else None, gpu_total_gib(own) if cuda else None,
                      cost.mean_seconds / floor_s, cost.seconds / floor_s, cost.seconds,
                      cost.mean_seconds, cost.reselection_seconds, cost.host_seconds, path, spiel.name)
