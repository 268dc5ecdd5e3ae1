"""The `untuned` builder: the pretrained model as it is (the "Original" rows of Tables 1 and 2).

Nothing trains, so there is no artifact; evaluation loads the base (4-bit where the method file
says `quantize: nf4`). Built for training it is Table 3's frozen floor: every weight frozen, the
gradient flowing through the activations to the embeddings' output, as it does for any method
that tunes the first block, with no weight gradient and no optimizer state.
"""
from __future__ import annotations

from pathlib import Path

import torch

from baselines.builder import BuildContext, Builder
from baselines.loading import load_base


class UntunedBuilder(Builder):
    title = "an untuned model"

    def build(self, model_path: str, method: dict, ctx: BuildContext) -> torch.nn.Module:
        self.check(method)
        model = load_base(model_path, ctx.dtype, method.get("quantize"))
        model.requires_grad_(False)
        model.enable_input_require_grads()
        return model

    def save(self, model: torch.nn.Module, artifact_dir: Path, optimizer=None) -> None:
        raise ValueError("an untuned model has no trained artifact to save")

    def load(self, model_path: str, artifact_dir: Path | None, method: dict, dtype: torch.dtype):
        return load_base(model_path, dtype, method.get("quantize"))
