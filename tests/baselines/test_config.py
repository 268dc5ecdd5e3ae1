"""Method configs: Table-4 defaults per size, overrides, errors, and a baseline from YAML alone."""
import pytest

from baselines import resolve_method
from baselines.peft_methods import peft_config
from finetune.train import train


def test_table4_defaults_per_size_and_overrides():
    assert resolve_method("lora", model_size="7b")["lr"] == 1e-4
    assert resolve_method("lora", model_size="13b")["lr"] == 3e-5
    assert resolve_method("sft-ma", model_size="13b")["r"] == 16
    assert resolve_method("sft-ag", model_size="7b")["weight_decay"] == 30.0
    small = resolve_method("lora", model_size="135m")
    assert small["r"] == 16 and small["lora_alpha"] == 16 and small["lora_dropout"] == 0.1
    assert resolve_method("lora", {"lr": 3e-6, "r": 8}, "7b")["lr"] == 3e-6


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="override 'rank'"):
        resolve_method("lora", {"rank": 8})
    with pytest.raises(ValueError, match="unknown method 'lorax'"):
        resolve_method("lorax")
    (tmp_path / "bad.yaml").write_text("builder: peft\nsizes: {7b: {lr: 1}}\ndefaults: {r: 1}\n")
    with pytest.raises(ValueError, match=r"sizes.7b sets \['lr'\]"):
        resolve_method("bad", directory=tmp_path)
    (tmp_path / "typo.yaml").write_text("builder: peft\npeft_config: LoraConfig\ndefaults: {lr: 1.0e-4, rr: 3}\n")
    with pytest.raises(ValueError, match="LoraConfig rejects"):
        peft_config(resolve_method("typo", directory=tmp_path))


def test_a_baseline_from_yaml_alone_trains(tiny_model_dir, mixture_path, tmp_path):
    methods = tmp_path / "methods"
    methods.mkdir()
    (methods / "loha.yaml").write_text(
        "builder: peft\npeft_config: LoHaConfig\ndefaults:\n  lr: 1.0e-3\n  r: 4\n"
        "  target_modules: [q_proj, v_proj]\n")
    method = resolve_method("loha", directory=methods)
    summary = train(tiny_model_dir, mixture_path, method,
                    {"max_steps": 2, "batch_size": 2, "max_length": 64}, tmp_path / "run")
    assert summary["steps"] == 2
    # LoHa: two rank-4 Hadamard factor pairs per matrix, q (64x64) and v (32x64), 2 layers.
    assert summary["trainable_params"] == 2 * 2 * 4 * ((64 + 64) + (64 + 32))
    assert (tmp_path / "run" / "artifact" / "adapter_config.json").exists()
