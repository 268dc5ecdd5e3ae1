"""SftTrainerCallback inside transformers.Trainer, with gradient accumulation, whether we or the
Trainer built the optimizer."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments

from conftest import tiny_llama, token_batch
from sft import SftAdamW, SftConfig, SftSelector, SftTrainerCallback, get_sft_model


class _Tokens(Dataset):
    def __init__(self, n):
        self.ids = token_batch(0, batch=n)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _args(tmp_path, **kw):
    kw = {"save_strategy": "no", **kw}
    return TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, max_steps=8, learning_rate=1e-2,
                             report_to=[], logging_strategy="no", use_cpu=True,
                             dataloader_num_workers=0, **kw)


def _sft_model():
    return get_sft_model(tiny_llama(), SftConfig(density=0.05, reselection_steps=3,
                                                 accumulation_steps=2))


@pytest.mark.parametrize("trainer_builds_optimizer", [False, True])
def test_trainer_drives_reselection(tmp_path, trainer_builds_optimizer):
    model = _sft_model()
    if trainer_builds_optimizer:
        selector = SftSelector(model)  # optimizer and total steps bound at train begin
        extra = {"optimizer_cls_and_kwargs": (SftAdamW, {"lr": 1e-2})}
    else:
        opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        selector = SftSelector(model, opt, 8)
        extra = {"optimizers": (opt, scheduler)}
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=_Tokens(32),
                      callbacks=[SftTrainerCallback(selector)], **extra)
    trainer.train()
    assert selector.completed_steps == 8 and selector.total_steps == 8
    assert selector.micro_batches_per_step == 2  # the Trainer's gradient_accumulation_steps
    assert selector.num_reselections == 2  # after steps 2 and 5; at step 8 = T, k(T) = 0
    grown = torch.cat([layer.grown_at for _, layer in model.sft_layers()])
    assert set(grown.unique().tolist()) == {1, 2}


def test_trainer_built_default_optimizer_is_rejected(tmp_path):
    model = _sft_model()
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=_Tokens(8),
                      callbacks=[SftTrainerCallback(SftSelector(model))])
    with pytest.raises(TypeError, match="optimizer_cls_and_kwargs"):
        trainer.train()


def test_trainer_resume_from_checkpoint_continues_the_selection(tmp_path):
    def run(out, resume=None, save_steps=None):
        model = _sft_model()
        selector = SftSelector(model)
        save = {"save_strategy": "steps", "save_steps": save_steps} if save_steps else {}
        args = _args(out, seed=3, **save)
        trainer = Trainer(model=model, args=args, train_dataset=_Tokens(32),
                          optimizer_cls_and_kwargs=(SftAdamW, {"lr": 1e-2}),
                          callbacks=[SftTrainerCallback(selector)])
        trainer.train(resume_from_checkpoint=resume)
        return model, selector

    straight, _ = run(tmp_path / "straight")
    run(tmp_path / "first", save_steps=4)  # checkpoint-4 lies inside the phase for step 5
    assert (tmp_path / "first" / "checkpoint-4" / "sft_selector.safetensors").is_file()
    resumed, selector = run(tmp_path / "first", resume=str(tmp_path / "first" / "checkpoint-4"))
    assert selector.completed_steps == 8 and selector.num_reselections == 2
    for (_, a), (_, b) in zip(straight.sft_layers(), resumed.sft_layers()):
        assert torch.equal(a.indices, b.indices)
        torch.testing.assert_close(a.values, b.values)
