"""A run's folder belongs to one run: a changed configuration never resumes another run's
checkpoint; weights that end non-finite, or a loss that climbs back to a uniform guess, are
failures; a resumed run's summary covers all of it; a torn metrics line does not block resume."""
import json
import math

import pytest
import torch
from transformers import TrainerCallback

from baselines import resolve_method
from finetune.metrics import DivergedError, NonFiniteWeightsError, read_metrics
from finetune.train import train

CFG = {"max_steps": 4, "batch_size": 2, "grad_accum": 1, "max_length": 64, "logging_steps": 1,
       "save_steps": 2, "warmup_ratio": 0.0}


class StopAt(TrainerCallback):
    """Ends the process's training early, as a kill would (after the checkpoint of that step)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_a_changed_learning_rate_starts_afresh_instead_of_resuming(tiny_model_dir, mixture_path, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model_dir, mixture_path, resolve_method("lora"), CFG, run, seed=0, callbacks=[StopAt(3)])
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    (run / "method.json").unlink()  # what the DAG's resolve rule rewrites for the new learning rate
    changed = resolve_method("lora", {"lr": 5e-4})
    summary = train(tiny_model_dir, mixture_path, changed, CFG, run, seed=0)
    assert summary["resumed_from"] is None  # not the old run's checkpoint-2
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert [r["lr"] for r in read_metrics(run / "metrics.jsonl")][0] == pytest.approx(5e-4)


def test_weights_replaced_in_place_with_the_same_size_start_afresh(tiny_model_dir, mixture_path, tmp_path):
    """A re-conversion or a new checkpoint saved into the model's folder is another base model,
    even when every file keeps its size."""
    import shutil

    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(str(model), mixture_path, resolve_method("lora"), CFG, run, seed=0, callbacks=[StopAt(3)])
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    weights = model / "model.safetensors"
    size = weights.stat().st_size
    tensors = {name: t + 0.5 for name, t in load_file(weights).items()}
    save_file(tensors, tmp_path / "new.safetensors", metadata={"format": "pt"})
    new = (tmp_path / "new.safetensors").read_bytes()
    assert len(new) == size
    with open(weights, "r+b") as fh:  # in place: same inode, same size
        fh.write(new)
    summary = train(str(model), mixture_path, resolve_method("lora"), CFG, run, seed=0)
    assert summary["resumed_from"] is None  # not the old base model's checkpoint-2
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]


def test_the_same_run_resumes_and_its_summary_covers_every_step(tiny_model_dir, mixture_path, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model_dir, mixture_path, resolve_method("lora"), CFG, run, seed=0, callbacks=[StopAt(3)])
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "lo')  # a row torn by the kill
    summary = train(tiny_model_dir, mixture_path, resolve_method("lora"), CFG, run, seed=0)
    assert summary["resumed_from"].endswith("checkpoint-2")
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert summary["train_loss"] == pytest.approx(sum(r["loss"] for r in rows) / 4)


class BreakWeightsOnLastStep(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == state.max_steps:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


def test_non_finite_weights_after_the_last_step_are_not_saved(tiny_model_dir, mixture_path, tmp_path):
    with pytest.raises(NonFiniteWeightsError, match="non-finite"):
        train(tiny_model_dir, mixture_path, resolve_method("lora"), CFG, tmp_path / "run", seed=0,
              callbacks=[BreakWeightsOnLastStep()])
    assert not (tmp_path / "run" / "artifact").exists()
    assert not (tmp_path / "run" / "train_summary.json").exists()


def test_a_loss_that_climbs_to_a_uniform_guess_stops_the_run(tiny_model_dir, mixture_path, tmp_path):
    """Full fine-tuning at lr 1e3: the first step's loss is the model's, then it blows up. (The
    tiny random model starts near ln V itself, so it is first trained to well below it.)"""
    from finetune.metrics import StepRecorder

    recorder = StepRecorder(tmp_path / "m.jsonl", vocab_size=300)
    recorder._check_divergence(2.0, 1)
    with pytest.raises(DivergedError, match="uniform guess"):
        recorder._check_divergence(math.log(300) * 0.99, 5)
    fresh = StepRecorder(tmp_path / "n.jsonl", vocab_size=300)
    fresh._check_divergence(math.log(300), 1)  # a random model starts there: no verdict
    fresh._check_divergence(math.log(300), 2)


def test_resuming_from_the_final_checkpoint_trains_no_extra_step(tiny_model_dir, mixture_path, tmp_path):
    """Killed after the last checkpoint but before its outputs: the rerun writes them from it."""
    import shutil

    run = tmp_path / "run"
    first = train(tiny_model_dir, mixture_path, resolve_method("lora"), CFG, run, seed=0)
    shutil.rmtree(run / "artifact")
    (run / "train_summary.json").unlink()
    again = train(tiny_model_dir, mixture_path, resolve_method("lora"), CFG, run, seed=0)
    assert again["resumed_from"].endswith("checkpoint-4") and again["steps"] == first["steps"] == 4
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert again["train_loss"] == pytest.approx(first["train_loss"])


def test_an_untuned_method_is_refused_before_anything_is_written(tiny_model_dir, mixture_path, tmp_path):
    with pytest.raises(ValueError, match="evaluated, not trained"):
        train(tiny_model_dir, mixture_path, resolve_method("original"), CFG, tmp_path / "run", seed=0)
    assert not (tmp_path / "run").exists()
