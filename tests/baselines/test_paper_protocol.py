"""The paper's protocol as the method files declare it: full fine-tuning at 7b in bf16 with
activation checkpointing and a paged optimizer; the Tulu v2 FullFT row from the released models;
13b FullFT on Flan v2 / GPT4-Alpaca empty with the paper's reason; SIFT at its own settings."""
import json
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import validate

from baselines import resolve_method
from baselines.registry import get_builder
from baselines.sift.builder import _targets
from finetune.train import train
from study.plan import Plan

ROOT = Path(__file__).resolve().parents[2]
CFG = {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 64, "logging_steps": 100,
       "save_steps": 100}


def merged(*names):
    """The config as Snakemake builds it: later files' nested keys over earlier ones, validated."""
    def merge(a, b):
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                        for k, v in b.items()}}
    config = {}
    for name in names:
        config = merge(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def test_full_fine_tuning_at_7b_is_the_papers_single_a100_setting():
    method = resolve_method("full", None, "7b")
    assert (method["lr"], method["weights_dtype"], method["optimizer"], method["activation_checkpointing"]) == (
        2e-5, "bfloat16", "paged_adamw_32bit", True)
    small = resolve_method("full", None, "135m")
    assert (small["weights_dtype"], small["optimizer"], small["activation_checkpointing"]) == (
        "float32", "adamw_torch", None)


def test_a_paged_optimizer_without_cuda_is_an_error_or_a_named_substitute(tiny_model_dir, mixture_path, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the substitution is for machines without CUDA")
    method = {**resolve_method("full", None, "7b"), "lr": 1e-4}
    with pytest.raises(ValueError, match="train.cpu_substitutes"):
        train(tiny_model_dir, mixture_path, method, CFG, tmp_path / "refused", seed=0)
    summary = train(tiny_model_dir, mixture_path, method, {**CFG, "cpu_substitutes": True},
                    tmp_path / "run", seed=0)
    assert summary["substitutions"] == ["optimizer paged_adamw_32bit -> adamw_torch (no CUDA)"]
    assert summary["activation_checkpointing"] is True  # the method's, over the config's false
    saved = json.loads((tmp_path / "run" / "artifact" / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "bfloat16"  # trained in bf16


def test_released_and_not_run_cells_of_the_paper_profile():
    plan = Plan(merged("config.yaml", "paper.yaml"))
    assert plan.run_kind("llama2-7b", "full", "mix") == ("released", "allenai/tulu-2-7b")
    assert plan.run_kind("llama2-7b", "full", "flan") == ("train", None)
    kind, reason = plan.run_kind("llama2-13b", "full", "flan")
    assert kind == "not_run" and "13b full fine-tuning on Flan v2" in reason
    assert plan.table_cell_source("llama2-13b", "single", "full", 0).startswith("not run in the paper")
    inputs = plan.table_inputs("table1")
    assert "results/evals/llama2-7b/mix/full/default/seed0/index.json" in inputs
    assert not any("llama2-13b/flan/full" in p or "llama2-13b/single/full" in p for p in inputs)
    from artifacts.layout import Run
    released = Run("llama2-13b", "mix", "full")
    assert plan.resolved_method(released)["released"] == "allenai/tulu-2-13b"
    assert plan.eval_model_path(released) == "allenai/tulu-2-13b" and not plan.is_trained(released)
    assert plan.hub_models() == ["allenai/tulu-2-13b", "allenai/tulu-2-7b",
                                 "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-7b-hf"]


def test_the_paper_profile_trains_spiel_on_the_papers_schedule():
    """config.yaml's embedded overrides (reselect every 4 steps) must not leak into paper.yaml."""
    from artifacts.layout import Run

    plan = Plan(merged("config.yaml", "paper.yaml"))
    for method in ("sft-ag", "sft-ma", "qsft-ag", "qsft-ma"):  # before any grid winner
        resolved = plan.base_method(Run("llama2-7b", "mix", method))
        assert (resolved["reselection_steps"], resolved["accumulation_steps"]) == (20, 5), method
    assert plan.base_method(Run("llama2-7b", "mix", "sft-ag"))["r"] == 64  # Table 4
    assert plan.resolved_method(Run("llama2-13b", "mix", "sft-ag"))["r"] == 64  # no 13b grid


def test_sift_takes_its_own_papers_settings(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    tiny_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    seven = resolve_method("sift", None, "7b")
    thirteen = resolve_method("sift", None, "13b")
    assert (seven["lr"], seven["density"]) == (2e-4, 0.05)
    assert (thirteen["lr"], thirteen["density"]) == (9e-5, 0.04)
    weights, counts = _targets(tiny_model, seven)
    assert sum(counts) == round(0.05 * sum(w.numel() for w in weights))
    with pytest.raises(ValueError, match="density"):
        _targets(tiny_model, {**seven, "density": 1.5})
    assert get_builder(seven)  # a known builder


def test_gpu_memory_of_a_training_job_from_the_cost_model():
    """resources.train.mem_from_cost_model: every GPU training job of a method the cost model
    covers gets gpu_mem_mb; larger models and SFT-AG's statistics ask for more."""
    config = merged("config.yaml", "paper.yaml")
    plain = Plan(config).job_resources("train", "llama2-7b", "lora")
    assert "gpu_mem_mb" not in plain and "mem_from_cost_model" not in plain
    config["resources"]["train"]["mem_from_cost_model"] = True
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    plan = Plan(config)
    need = {(model, method): plan.job_resources("train", model, method).get("gpu_mem_mb")
            for model in ("llama2-7b", "llama2-13b") for method in ("lora", "sft-ag", "sft-ma", "full")}
    assert need[("llama2-7b", "full")] is None  # not covered: the configured resources stand
    assert 13_000 < need[("llama2-7b", "lora")] < need[("llama2-13b", "lora")] < 80_000
    assert need[("llama2-7b", "sft-ma")] < need[("llama2-7b", "sft-ag")]
    assert plan.job_resources("train", "llama2-7b", "lora")["mem_mb"] == plain["mem_mb"]
