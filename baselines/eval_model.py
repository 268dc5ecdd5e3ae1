"""Load a run's model for evaluation: the method's builder puts its artifact on the base."""
from __future__ import annotations

from pathlib import Path

import torch

from artifacts.layout import RunFolder
from baselines.loading import bf16_supported, load_tokenizer
from baselines.registry import get_builder


def load_for_eval(model_path: str, run_dir: Path | None, method: dict,
                  dtype: torch.dtype | None = None):
    """(model, tokenizer) ready for evaluation, in eval mode.

    An untuned method (`original`, `original-4bit`) has no run: `run_dir` is None. A trained
    artifact is merged into the base where possible; over a 4-bit base it stays unmerged.
    """
    dtype = dtype or (torch.bfloat16 if bf16_supported() else torch.float32)
    builder = get_builder(method)
    artifact = None
    if method.get("builder") != "untuned":
        if run_dir is None:
            raise ValueError(f"load_for_eval: method {method.get('name')!r} needs its run folder")
        artifact = RunFolder(Path(run_dir)).artifact
        if not artifact.is_dir():
            raise FileNotFoundError(f"{artifact}: no trained artifact (did training finish?)")
    model = builder.load(model_path, artifact, method, dtype)
    return model.eval(), load_tokenizer(model_path)
