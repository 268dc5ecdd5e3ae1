"""The shared loop: records, schedule, determinism, the NaN stop, and LoRA end to end."""
import json

import pytest
import torch
from safetensors.torch import load_file

from baselines import resolve_method
from baselines.eval_model import load_for_eval
from finetune.metrics import NonFiniteLossError, read_metrics
from finetune.train import read_method, train

CFG = {"max_steps": 4, "batch_size": 2, "grad_accum": 2, "max_length": 64, "logging_steps": 1,
       "save_steps": 100, "warmup_ratio": 0.3}


def test_lora_trains_and_writes_its_records(tiny_model_dir, mixture_path, tmp_path):
    summary = train(tiny_model_dir, mixture_path, resolve_method("lora"), CFG, tmp_path / "run", seed=0)
    run = tmp_path / "run"
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["step_time_s"] > 0 and r["peak_memory_mb"] > 0 and r["loss"] > 0 for r in rows)
    # Linear warmup over ceil(0.3 * 4) = 2 steps, then linear decay to 0.
    lr = resolve_method("lora")["lr"]
    assert [r["lr"] for r in rows] == pytest.approx([0.0, lr / 2, lr, lr / 2])
    saved = json.loads((run / "train_summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["steps"] == 4 and saved["seed"] == 0 and read_method(run)["name"] == "lora"
    assert saved["final_loss"] == rows[-1]["loss"]
    # r * (d_in + d_out) over q, k, v, o (64x64, 64x32 twice, 64x64) and the MLP (64x128 x3), 2 layers.
    assert saved["trainable_params"] == 2 * 16 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 3)
    adapter = load_file(run / "artifact" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # B starts at 0
    model, tok = load_for_eval(tiny_model_dir, run, read_method(run))
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged


def test_same_seed_same_weights_other_seed_differs(tiny_model_dir, mixture_path, tmp_path):
    method = resolve_method("lora")
    cfg = {**CFG, "max_steps": 2}
    weights = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(tiny_model_dir, mixture_path, method, cfg, tmp_path / name, seed=seed)
        weights.append(load_file(tmp_path / name / "artifact" / "adapter_model.safetensors"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_a_finished_run_with_the_same_fingerprint_is_reused_not_trained_again(
        tiny_model_dir, mixture_path, tmp_path, monkeypatch):
    """A table run training the grid's winning point is that point's run: its setting_source
    differs (a record), nothing training reads does, so it copies the point's artifact."""
    import finetune.train as train_module

    cfg = {**CFG, "max_steps": 2}
    point = {**resolve_method("lora"), "setting_source": {"summary": "grid point lr=0.0002"}}
    train(tiny_model_dir, mixture_path, point, cfg, tmp_path / "point", seed=0)
    other_lr = {**point, "lr": point["lr"] * 2}
    train(tiny_model_dir, mixture_path, other_lr, cfg, tmp_path / "other", seed=0)

    def no_training(*args, **kwargs):
        raise AssertionError("reused run must not build a model")

    monkeypatch.setattr(train_module, "get_builder", no_training)
    winner = {**point, "setting_source": {"summary": "lr 0.0002 (grid)"}}
    summary = train(tiny_model_dir, mixture_path, winner, cfg, tmp_path / "table", seed=0,
                    donors=[tmp_path / "other", tmp_path / "point"])
    assert summary["reused_from"] == str(tmp_path / "point") and summary["steps"] == 2
    saved = json.loads((tmp_path / "table" / "train_summary.json").read_text())
    assert saved == summary and read_method(tmp_path / "table") == winner
    weights = load_file(tmp_path / "table" / "artifact" / "adapter_model.safetensors")
    expected = load_file(tmp_path / "point" / "artifact" / "adapter_model.safetensors")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert (tmp_path / "table" / "metrics.jsonl").read_text() == (tmp_path / "point" / "metrics.jsonl").read_text()
    with pytest.raises(AssertionError, match="must not build"):  # another seed is another run
        train(tiny_model_dir, mixture_path, winner, cfg, tmp_path / "seed1", seed=1, donors=[tmp_path / "point"])


def test_non_finite_loss_stops_and_names_the_step(tiny_model_dir, mixture_path, tmp_path):
    method = resolve_method("full", {"lr": 1e30})
    cfg = {**CFG, "warmup_ratio": 0.0, "max_grad_norm": 0.0}
    with pytest.raises(NonFiniteLossError, match=r"at step \d+") as err:
        train(tiny_model_dir, mixture_path, method, cfg, tmp_path / "run")
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    # The named step is the first one with a non-finite loss: every earlier step was recorded.
    assert f"at step {len(rows) + 1};" in str(err.value) and len(rows) >= 1
    assert not (tmp_path / "run" / "artifact").exists()


def test_unknown_train_key_fails(tiny_model_dir, mixture_path, tmp_path):
    with pytest.raises(ValueError, match="unknown key.*'max_step'"):
        train(tiny_model_dir, mixture_path, resolve_method("lora"), {"max_step": 3}, tmp_path)


def _final_weights(run):
    files = sorted((run / "artifact").glob("*.safetensors"))
    return {k: v for f in files for k, v in load_file(f).items()}


def test_gradient_accumulation_builds_the_effective_batch(tiny_model_dir, mixture_path, tmp_path):
    method = resolve_method("full", {"lr": 1e-3})
    base = {**CFG, "max_steps": 2, "warmup_ratio": 0.0}
    train(tiny_model_dir, mixture_path, method, {**base, "batch_size": 4, "grad_accum": 1}, tmp_path / "big")
    train(tiny_model_dir, mixture_path, method, {**base, "batch_size": 2, "grad_accum": 2}, tmp_path / "acc")
    train(tiny_model_dir, mixture_path, method, {**base, "batch_size": 2, "grad_accum": 1}, tmp_path / "small")
    big, acc, small = (_final_weights(tmp_path / n) for n in ("big", "acc", "small"))
    assert all(torch.allclose(big[k], acc[k], atol=1e-5) for k in big)
    assert not all(torch.allclose(big[k], small[k], atol=1e-5) for k in big)


def test_activation_checkpointing_gives_the_same_training(tiny_model_dir, mixture_path, tmp_path):
    from transformers import TrainerCallback

    seen = []

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen.append(model.get_base_model().is_gradient_checkpointing)

    method = resolve_method("lora")
    train(tiny_model_dir, mixture_path, method, CFG, tmp_path / "plain", callbacks=[Probe()])
    train(tiny_model_dir, mixture_path, method, {**CFG, "activation_checkpointing": True}, tmp_path / "ckpt",
          callbacks=[Probe()])
    assert seen == [False, True]
    a = read_metrics(tmp_path / "plain" / "metrics.jsonl")
    b = read_metrics(tmp_path / "ckpt" / "metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
