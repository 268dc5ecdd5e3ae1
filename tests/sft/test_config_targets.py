"""SftConfig validation and JSON, target discovery, budget allocation, LoRA-equal budgets."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from conftest import tiny_llama
from sft import SftConfig, lora_equivalent_budget
from sft.targets import allocate_budget, find_target_linears


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of 'density' and 'num_tunable_weights'"),
    ({"density": 0.1, "num_tunable_weights": 10}, "exactly one"),
    ({"density": 0.0}, "'density' must lie in \\(0, 1\\]"),
    ({"density": 1.5}, "'density' must lie in"),
    ({"num_tunable_weights": -3}, "positive integer"),
    ({"density": 0.1, "selection": "rigl"}, "unknown 'selection' 'rigl'"),
    ({"density": 0.1, "schedule": "step"}, "unknown 'schedule'"),
    ({"density": 0.1, "accumulation_steps": 30}, "cannot exceed 'reselection_steps'"),
    ({"density": 0.1, "delta_dtype": "int8"}, "unknown 'delta_dtype'"),
    ({"density": 0.1, "target_modules": []}, "target_modules"),
    ({"density": True}, "'density' must be a finite number"),  # bool is an int to Python
    ({"density": "0.05"}, "'density' must be a finite number"),
    ({"density": float("nan")}, "'density' must be a finite number"),
    ({"density": 0.1, "initial_reselection_rate": float("nan")}, "'initial_reselection_rate'"),
    ({"density": 0.1, "seed": "zero"}, "'seed' must be an integer"),
    ({"density": 0.1, "seed": 1.5}, "'seed' must be an integer"),
    ({"num_tunable_weights": True}, "'num_tunable_weights' must be an integer"),
    ({"num_tunable_weights": "100"}, "'num_tunable_weights' must be an integer"),
    ({"density": 0.1, "delta_dtype": ["float32"]}, "'delta_dtype' must be a string"),
])
def test_config_rejects_impossible_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SftConfig(**kwargs)


def test_config_json_roundtrip_and_errors(tmp_path):
    config = SftConfig(num_tunable_weights=1234, selection="ma", target_modules=["q_proj"],
                       delta_dtype="bfloat16", schedule="cosine")
    path = config.save(tmp_path)
    assert path.name == "sft_config.json"
    loaded = SftConfig.load(tmp_path)
    assert loaded == config and loaded.torch_delta_dtype == torch.bfloat16
    data = json.loads(path.read_text())
    data["density"] = 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{path}.*exactly one"):
        SftConfig.load(path)
    path.write_text(json.dumps({"density": 0.1, "sparsity": 2}))
    with pytest.raises(ValueError, match="unknown SftConfig key.*sparsity"):
        SftConfig.load(path)
    path.write_text('{"density": 0.1,\n oops}')
    with pytest.raises(ValueError, match=f"{path}:2: invalid JSON"):
        SftConfig.load(path)


def test_default_targets_are_block_linears_only(model):
    names = [n for n, _ in find_target_linears(model)]
    assert len(names) == 14 and "lm_head" not in names
    assert all(n.startswith("model.layers.") for n in names)
    only_q = [n for n, _ in find_target_linears(model, ["q_proj"])]
    assert only_q == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    with pytest.raises(ValueError, match="no linear layers named by target_modules"):
        list(find_target_linears(model, ["nonexistent"]))


@pytest.mark.parametrize("rank", [1, 8])
@pytest.mark.parametrize("targets", [None, ["q_proj", "v_proj", "down_proj"]])
def test_lora_equivalent_budget_matches_peft(rank, targets):
    import peft

    model = tiny_llama()
    ours = lora_equivalent_budget(model, rank, targets)
    lora = peft.LoraConfig(r=rank, target_modules=targets or "all-linear")
    trainable, _ = peft.get_peft_model(model, lora).get_nb_trainable_parameters()
    assert ours == trainable


def test_lora_equivalent_budget_llama2_7b_and_13b():
    def meta_llama(hidden, intermediate, layers):
        config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate,
                             num_hidden_layers=layers, num_attention_heads=32, vocab_size=32000)
        with torch.device("meta"):
            return LlamaForCausalLM(config)

    assert lora_equivalent_budget(meta_llama(4096, 11008, 32), 1) == 2_498_560
    assert lora_equivalent_budget(meta_llama(5120, 13824, 40), 1) == 3_911_680


def test_allocate_budget_exact_total_and_equal_density():
    sizes = [4096, 2048, 8192, 8192, 777]
    counts = allocate_budget(sizes, num_tunable_weights=1001)
    assert sum(counts) == 1001
    for c, s in zip(counts, sizes):
        assert abs(c - 1001 * s / sum(sizes)) < 1
    assert allocate_budget(sizes, density=0.5) == [2048, 1024, 4096, 4096, 388]
    with pytest.raises(ValueError, match="0 tunable weights"):
        allocate_budget(sizes, num_tunable_weights=3)
    with pytest.raises(ValueError, match="exceeds"):
        allocate_budget(sizes, num_tunable_weights=10**6)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=64,
                                      bos_token_id=0, eos_token_id=0))


@pytest.mark.parametrize("targets, layer", [
    (None, "transformer.h.0.attn.c_attn"),  # the default: every weight layer of the blocks
    (["c_attn"], "transformer.h.0.attn.c_attn"),
    (["lm_head", "c_fc"], "transformer.h.0.mlp.c_fc"),  # not silently the lm_head alone
])
def test_gpt2s_conv1d_is_a_clear_error_naming_the_layer_and_its_type(targets, layer):
    """GPT-2 keeps its projections in transformers' Conv1D (a transposed weight), which the
    library does not wrap: it says so, rather than tuning nothing or only the layers left."""
    from sft import get_sft_model

    with pytest.raises(ValueError, match=f"layer {layer} is a transformers.pytorch_utils.Conv1D, not an nn.Linear"):
        get_sft_model(tiny_gpt2(), SftConfig(num_tunable_weights=64, target_modules=targets))


def test_named_embeddings_are_an_error_and_embeddings_inside_blocks_are_skipped():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)
            self.bias_table = torch.nn.Embedding(4, 2)  # T5's relative position bias

    model = torch.nn.Module()
    model.blocks = torch.nn.ModuleList([Block()])
    assert [name for name, _ in find_target_linears(model)] == ["blocks.0.proj"]
    with pytest.raises(ValueError, match="layer blocks.0.bias_table is a torch.nn.modules.sparse.Embedding"):
        list(find_target_linears(model, ["proj", "bias_table"]))


@pytest.mark.parametrize("text, message", [
    (b'{"density": NaN}', "NaN is not a finite number"),
    (b'{"density": Infinity}', "Infinity is not a finite number"),
    (b'{"density": true}', "'density' must be a finite number"),
    (b'{"density": "0.05"}', "'density' must be a finite number"),
    (b'{"density": 0.1, "seed": "zero"}', "'seed' must be an integer"),
    (b'{"density": 0.1, "seed": ' + b"7" * 5000 + b"}", "invalid JSON: Exceeds the limit"),
    (b'{"density": 0.1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"density": 0.1, "target_modules": ["caf\xe9"]}', "not UTF-8"),
])
def test_a_bad_config_file_names_the_file(tmp_path, text, message):
    path = tmp_path / "sft_config.json"
    path.write_bytes(text)
    with pytest.raises(ValueError, match=f"{path}.*{message}"):
        SftConfig.load(path)
