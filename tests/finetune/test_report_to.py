"""`train.report_to` reaches the Trainer (default: no reporter)."""
from pathlib import Path

import torch

from baselines.builder import BuildContext
from finetune.train import _training_args, resolve_train_cfg


def test_report_to_is_a_train_setting(tmp_path: Path):
    ctx = BuildContext(dtype=torch.float32)
    default = _training_args(resolve_train_cfg({}), ctx, tmp_path, seed=0, world_size=1)
    assert default.report_to in ([], ["none"], "none")
    chosen = _training_args(resolve_train_cfg({"report_to": ["wandb", "tensorboard"]}), ctx,
                            tmp_path, seed=0, world_size=1)
    assert chosen.report_to == ["wandb", "tensorboard"]
