"""Method files and the methods a config resolves are checked when the DAG is built, before any
model or data is prepared: values against baselines/method.schema.yaml, keys and the peft config
class by each builder's own check, every message naming the method file or the config key."""
import re
import shutil
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from baselines import resolve_method
from baselines.config import read_method_file
from study.checks import check_references
from study.plan import Plan

ROOT = Path(__file__).resolve().parents[2]


def config(**changes):
    """The embedded default config as Snakemake validates it, with top-level keys replaced."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg.update(changes)
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return cfg


def check(cfg) -> str:
    with pytest.raises(ValueError) as err:
        check_references(Plan(cfg))
    return str(err.value)


def test_every_shipped_method_file_and_config_passes():
    for name in sorted(p.stem for p in (ROOT / "config" / "methods").glob("*.yaml")):
        for size in (None, "135m", "7b", "13b"):
            resolve_method(name, None, size)
    check_references(Plan(config()))


@pytest.mark.parametrize("method, key, value", [
    ("lora", "r", "sixteen"),
    ("lora", "r", 0),
    ("lora", "lr", -1),
    ("lora", "lora_dropout", 1.5),
    ("lora", "lora_alpha", 0),
    ("sft-ag", "initial_reselection_rate", 1.5),
    ("sft-ag", "initial_reselection_rate", 0),
    ("sft-ag", "reselection_steps", 2.5),
    ("sft-ag", "selection", "gradient"),
    ("sft-ag", "weight_decay", -0.1),
    ("sift", "density", 1.5),
    ("sift", "mask_batches", 0),
    ("full", "weights_dtype", "float8"),
    ("full", "activation_checkpointing", "yes"),
    ("qlora", "quantize", "int8"),
    ("lora", "lr", "1e-4"),  # YAML reads 1e-4 (no dot) as a string
    ("lora", "lr", float("nan")),  # range checks compare, and NaN compares false
    ("lora", "lr", float("inf")),
    ("lora", "lora_dropout", float("nan")),
    ("lora", "lora_alpha", float("-inf")),
    ("lora", "target_modules", [float("nan")]),
])
def test_a_bad_override_value_names_its_source(method, key, value):
    source = f"method_overrides.{method}.{key}"
    with pytest.raises(ValueError, match=re.escape(source)):
        resolve_method(method, {key: value}, "7b", sources={key: source})
    with pytest.raises(ValueError, match=re.escape(f"override {key!r}")):
        resolve_method(method, {key: value}, "7b")


def test_bad_overrides_and_grid_values_name_the_config_key():
    cfg = config()
    cfg["method_overrides"] = {"lora": {"r": "sixteen", "lr": -1, "lora_dropout": 1.5},
                               "sft-ag": {"initial_reselection_rate": 1.5}}
    cfg["study"]["grid"]["searches"] = [{"method": "lora", "lr": [0.001]},
                                        {"method": "sft-ma", "r": [4, 16]},
                                        {"method": "sft-ma", "lr": [0.001, -1], "r": [4]}]
    message = check(cfg)
    for key in ("method_overrides.lora.r", "method_overrides.lora.lr",
                "method_overrides.lora.lora_dropout", "method_overrides.sft-ag.initial_reselection_rate",
                "study.grid.searches[2].lr"):
        assert key in message, (key, message)
    assert "searches[1]" not in message and "searches[2].r" not in message


def test_a_non_finite_number_anywhere_in_the_config_names_its_key():
    cfg = config()
    cfg["train"]["warmup_ratio"] = float("nan")
    cfg["method_overrides"] = {"lora": {"lr": float("inf")}}
    message = check(cfg)
    assert "train.warmup_ratio: nan is not a finite number" in message
    assert "method_overrides.lora.lr" in message


def test_grid_values_over_the_overrides_are_checked_together():
    """The builder's own check sees the grid point over the overrides: SpIEL's gradient
    accumulation (gamma) may not outlast the reselection interval (S)."""
    cfg = config()
    cfg["method_overrides"] = {"sft-ag": {"reselection_steps": 4, "accumulation_steps": 2}}
    cfg["study"]["grid"]["searches"] = [{"method": "sft-ag", "accumulation_steps": [2, 8]}]
    message = check(cfg)
    assert "study.grid.searches[0]" in message and "accumulation_steps" in message


def methods_copy(tmp_path, monkeypatch, **files):
    methods = tmp_path / "methods"
    shutil.copytree(ROOT / "config" / "methods", methods)
    for name, text in files.items():
        (methods / f"{name}.yaml").write_text(text)
    monkeypatch.setenv("SFT_METHODS_DIR", str(methods))
    return methods


LORA = ("builder: peft\npeft_config: {cls}\ndefaults:\n  lr: 2.0e-4\n  r: 4\n"
        "  {alpha}: 8\n  target_modules: all-linear\n")


def test_a_method_file_with_an_unknown_peft_class_or_keyword_names_file_and_key(tmp_path, monkeypatch):
    methods = methods_copy(
        tmp_path, monkeypatch,
        **{"lora-cls": LORA.format(cls="LoraConfg", alpha="lora_alpha"),
           "lora-kw": LORA.format(cls="LoraConfig", alpha="lora_alhpa"),
           "sft-kw": "builder: sft\ndefaults:\n  selection: ag\n  lr: 1.0e-4\n  r: 4\n"
                     "  reselection_step: 4\n",
           "sift-kw": "builder: sift\ndefaults:\n  lr: 1.0e-4\n  r: 4\n  mask_batch: 1\n",
           "full-kw": "builder: full\ndefaults:\n  lr: 1.0e-4\n  r: 4\n"})
    cfg = config()
    cfg["study"]["table1"]["methods"] = ["lora", "*"]
    message = check(cfg)
    for name, key in [("lora-cls", "LoraConfg"), ("lora-kw", "lora_alhpa"),
                      ("sft-kw", "reselection_step"), ("sift-kw", "mask_batch"), ("full-kw", "'r'")]:
        line = next((line for line in message.splitlines() if f"{methods / name}.yaml" in line), "")
        assert key in line, (name, key, message)


def test_a_method_used_only_by_the_profile_or_the_grid_is_checked(tmp_path, monkeypatch):
    methods_copy(tmp_path, monkeypatch, **{"lora-kw": LORA.format(cls="LoraConfig", alpha="lora_alhpa")})
    cfg = config(profile={"methods": ["lora-kw"]})
    assert "lora_alhpa" in check(cfg)
    cfg = config()
    cfg["study"]["grid"]["searches"] = [{"method": "lora-kw", "lr": [0.001]}]
    assert "lora_alhpa" in check(cfg)


@pytest.mark.parametrize("text, key", [
    ("builder: peft\npeft_config: LoraConfig\ndefaults: {lr: 1.0e-4, r: sixteen}\n", "defaults.r"),
    ("builder: peft\npeft_config: LoraConfig\ndefaults: {lr: 1.0e-4, r: 4}\nsizes: {7b: {r: 0}}\n",
     "sizes.7b.r"),
    ("builder: sft\ndefaults: {lr: 1.0e-4, selection: ag, r: 4, initial_reselection_rate: 1.5}\n",
     "defaults.initial_reselection_rate"),
    ("builder: sft\ndefaults: {r: 4, selection: ag}\n", "'lr'"),
    ("builder: peft\ndefaults: {lr: 1.0e-4}\n", "'peft_config'"),
    ("builder: lora\ndefaults: {lr: 1.0e-4}\n", "builder"),
    ("builder: full\nlabel: 3\ndefaults: {lr: 1.0e-4}\n", "label"),
    ("builder: full\ntable: 3\ndefaults: {lr: 1.0e-4}\n", "table"),
    ("builder: full\nprofile: {floor: original, refrence: lora}\ndefaults: {lr: 1.0e-4}\n", "refrence"),
    ("builder: full\nreleased: {7b: {mix: 3}}\ndefaults: {lr: 1.0e-4}\n", "released.7b.mix"),
    ("builder: full\ndefaults: {lr: 1.0e-4}\nsizes: {7B: {lr: 1.0e-5}}\n", "7B"),
    ("builder: full\ndefualts: {lr: 1.0e-4}\n", "defualts"),
    ("builder: peft\npeft_config: LoraConfig\ndefaults: {lr: .nan, r: 4}\n", "defaults.lr: nan is not a finite"),
    ("builder: peft\npeft_config: LoraConfig\ndefaults: {lr: .inf, r: 4}\n", "defaults.lr: inf is not a finite"),
    ("builder: peft\npeft_config: LoraConfig\ndefaults: {lr: 1.0e-4, r: 4, lora_dropout: .nan}\n",
     "defaults.lora_dropout: nan"),
    ("builder: peft\npeft_config: LoraConfig\ndefaults: {lr: 1.0e-4, r: 4, lora_dropout: 0.1}\n"
     "sizes: {7b: {lora_dropout: .NaN}}\n", "sizes.7b.lora_dropout: nan"),
])
def test_a_bad_method_file_names_file_and_key(tmp_path, text, key):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ValueError) as err:
        read_method_file("bad", tmp_path)
    assert str(tmp_path / "bad.yaml") in str(err.value) and key in str(err.value), str(err.value)


@pytest.mark.parametrize("data, what", [
    (b"builder: full\nlabel: caf\xe9\ndefaults: {lr: 1.0e-4}\n", "not UTF-8 (byte 0xe9"),
    (b"builder: full\ndefaults: {lr: 1.0e-4, r: " + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
     "nested too deeply"),
    (b"builder: full\ndefaults: {lr: 1.0e-4, r: " + b"1" * 5000 + b"}\n", "Exceeds the limit"),
])
def test_an_unreadable_method_file_names_the_file(tmp_path, data, what):
    (tmp_path / "bad.yaml").write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'bad.yaml'}: not ")) as err:
        read_method_file("bad", tmp_path)
    assert what in str(err.value)



def test_a_builder_checks_a_resolved_method_without_a_model():
    from baselines.registry import check_method

    for name in ("full", "lora", "ia3", "dora", "shira", "sft-ag", "qsft-ma", "sift", "original"):
        check_method(resolve_method(name, None, "7b"))
    with pytest.raises(ValueError, match="cannot exceed 'reselection_steps'"):
        check_method(resolve_method("sft-ag", {"accumulation_steps": 30}))
    with pytest.raises(ValueError, match=r"does not take \['r'\]"):
        check_method({**resolve_method("original"), "r": 4})
