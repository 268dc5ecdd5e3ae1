"""SftTrainer: delta-only checkpoints on a tied-embedding model, exact resume, the selector's
statistics in the Trainer's logs, the SFT optimizer by default."""
from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from conftest import Tokens, tiny_llama
from sft import (SftAdamW, SftConfig, SftSelector, SftSM3, SftTrainer, SftTrainerCallback,
                 get_sft_model)


def _args(out, **kw):
    kw = {"save_strategy": "no", "logging_strategy": "no", "max_steps": 8, **kw}
    return TrainingArguments(output_dir=str(out), per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, learning_rate=1e-2,
                             report_to="none", use_cpu=True, dataloader_num_workers=0, seed=3, **kw)


def _tied_sft(selection="ag"):
    return get_sft_model(tiny_llama(tied=True),
                         SftConfig(density=0.05, selection=selection, reselection_steps=3,
                                   accumulation_steps=2))


def test_plain_trainer_cannot_checkpoint_a_tied_model(tmp_path):
    """Why SftTrainer exists: the Trainer saves a non-PreTrainedModel's full state dict."""
    model = _tied_sft()
    trainer = Trainer(model=model, args=_args(tmp_path, save_strategy="steps", save_steps=2),
                      train_dataset=Tokens(32), optimizer_cls_and_kwargs=(SftAdamW, {"lr": 1e-2}),
                      callbacks=[SftTrainerCallback(SftSelector(model))])
    with pytest.raises(RuntimeError, match="share memory"):
        trainer.train()


def _run(out, selection="ag", resume=None, **kw):
    model = _tied_sft(selection)
    trainer = SftTrainer(model=model, args=_args(out, **kw), train_dataset=Tokens(32))
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_delta_only_checkpoints_resume_exactly_on_a_tied_model(tmp_path, selection):
    straight, _ = _run(tmp_path / "straight", selection)
    # checkpoint-4 lies inside SFT-AG's estimation phase for the reselection after step 5
    _, first = _run(tmp_path / "run", selection, save_strategy="steps", save_steps=4)
    checkpoint = tmp_path / "run" / "checkpoint-4"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"sft_model.safetensors", "sft_config.json", "sft_selector.safetensors",
            "optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth"} <= names
    assert not names & {"model.safetensors", "pytorch_model.bin"}
    base_bytes = sum(p.numel() * p.element_size() for p in straight.base_model.parameters())
    assert (checkpoint / "sft_model.safetensors").stat().st_size < base_bytes / 5
    assert isinstance(first.optimizer.optimizer, SftAdamW if selection == "ag" else SftSM3)

    resumed, trainer = _run(tmp_path / "run", selection, resume=str(checkpoint))
    assert trainer.sft_selector.completed_steps == 8 and trainer.sft_selector.num_reselections == 2
    for (_, a), (_, b) in zip(straight.sft_layers(), resumed.sft_layers()):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.grown_at, b.grown_at)
        assert torch.equal(a.values, b.values)  # bit-identical on CPU
    # the tie is intact: the deltas never touched the shared weight
    base = resumed.base_model
    assert base.lm_head.weight is base.model.embed_tokens.weight


class _Seen(TrainerCallback):
    """Stands for a reporter (TensorBoard, W&B), which the Trainer calls before user callbacks."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def test_selector_statistics_reach_the_reporters(tmp_path):
    model = _tied_sft()
    trainer = SftTrainer(model=model, args=_args(tmp_path, logging_strategy="steps", logging_steps=1),
                         train_dataset=Tokens(32))
    seen = _Seen()
    trainer.callback_handler.callbacks.insert(0, seen)
    trainer.train()
    train_logs = [log for log in seen.logs if "loss" in log]
    assert len(train_logs) == 8
    d_phi = sum(layer.num_active for _, layer in model.sft_layers())
    for step, log in enumerate(train_logs, start=1):
        assert log["sft/reselections"] == (0 if step < 2 else 1 if step < 5 else 2)
        # right after the first reselection every delta is a fresh 0
        assert (log["sft/mean_abs_delta"] > 0) == (step != 2)
        assert log["sft/age_max"] >= log["sft/age_median"] >= 0
        assert ("sft/dropped" in log) == (step in (2, 5))
    first, second = train_logs[1], train_logs[4]
    assert first["sft/dropped"] == first["sft/grown"] == d_phi  # the first replaces everything
    assert 0 < second["sft/grown"] < d_phi and second["sft/regrown"] <= second["sft/grown"]
    assert first["sft/age_max"] == 0  # every entry grown at step 2, logged at step 2
    assert train_logs[3]["sft/age_mean"] == 2  # step 4: all entries grown at step 2
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert all("sft/mean_abs_delta" in h for h in history)


def test_plain_trainer_with_the_callback_gets_the_statistics_in_its_history(tmp_path):
    model = _tied_sft()
    args = _args(tmp_path, logging_strategy="steps", logging_steps=1, max_steps=3)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(32),
                      optimizer_cls_and_kwargs=(SftAdamW, {"lr": 1e-2}),
                      callbacks=[SftTrainerCallback(SftSelector(model))])
    trainer.train()
    history = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["sft/reselections"] for h in history] == [0, 1, 1]


def test_sft_trainer_leaves_other_models_to_the_trainer(tmp_path):
    model = tiny_llama()
    trainer = SftTrainer(model=model, args=_args(tmp_path, max_steps=1), train_dataset=Tokens(8))
    assert trainer.sft_callback is None
    trainer.train()
    trainer.save_model(str(tmp_path / "full"))
    assert (tmp_path / "full" / "model.safetensors").is_file()


def test_evaluation_finds_the_labels_through_the_wrapper(tmp_path):
    model = _tied_sft()
    trainer = SftTrainer(model=model, args=_args(tmp_path, max_steps=2), train_dataset=Tokens(8),
                         eval_dataset=Tokens(4))
    assert trainer.label_names == ["labels"]
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] > 0
