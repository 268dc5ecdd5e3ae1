"""What one Table 3 measurement measures, and the one place its defaults are written (the DAG's
profile section, the measuring command line and the record all take them from here).
Torch-free, so that the DAG can read the defaults while it parses."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class MeasureSpec:
    model_path: str
    method: str
    rank: int = 16                      # LoRA rank r; SFT budgets are the LoRA-equivalent count
    batch_size: int = 4
    seq_len: int = 128
    steps: int = 30                     # measured steps (paper: 30)
    warmup_steps: int = 1               # not timed: lazy init, allocator growth, first plans
    activation_checkpointing: bool = False
    model_size: str | None = None       # picks the method's per-size defaults (Table 4)
    threads: int | None = None
    memory_cap_gib: float | None = None  # CUDA only: set_per_process_memory_fraction
    cuda_memory_history: str | None = None  # CUDA only: a file for the allocator's history
    seed: int = 0

    def __post_init__(self):
        for key in ("rank", "batch_size", "seq_len", "steps"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"MeasureSpec.{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup_steps < 0:
            raise ValueError(f"MeasureSpec.warmup_steps must be >= 0, got {self.warmup_steps}")



def spec_defaults() -> dict:
    """{field: default} of the fields that have one."""
    return {f.name: f.default for f in fields(MeasureSpec) if f.name not in ("model_path", "method")}
