"""The stand-in model: a Llama-2-shaped folder that the harness loads and trains."""
from __future__ import annotations

import json

import pytest
import torch

from finetune.chat import encode_example


def test_folder_loads_like_a_llama2_checkpoint(standins):
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    folder = standins / "meta-llama/Llama-2-7b-hf"
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer.model", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and config.architectures == ["LlamaForCausalLM"]
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, None)
    assert config.num_key_value_heads == config.num_attention_heads  # MHA, as 7b and 13b
    assert not config.tie_word_embeddings and config.max_position_embeddings == 4096
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float16"
    gen = GenerationConfig.from_pretrained(folder)
    assert (gen.do_sample, gen.temperature, gen.top_p, gen.pad_token_id) == (True, 0.6, 0.9, 0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert model.dtype == torch.float32
    assert model.get_input_embeddings().num_embeddings == config.vocab_size


def test_lora_rank_64_budget_fits(standins):
    """The paper's r=64 (Table 4) as a SpIEL budget must fit in the targeted matrices."""
    from transformers import AutoModelForCausalLM

    from sft import lora_equivalent_budget
    from sft.targets import find_target_linears

    model = AutoModelForCausalLM.from_pretrained(standins / "meta-llama/Llama-2-7b-hf", dtype=torch.float32)
    total = sum(lin.weight.numel() for _, lin in find_target_linears(model, None))
    assert lora_equivalent_budget(model, 64) < 0.5 * total


def test_one_training_step(standins):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = standins / "meta-llama/Llama-2-7b-hf"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.train()
    ex = encode_example(tokenizer, "Sort 5, 3, 9.", "3, 5, 9", max_length=128)
    batch = {k: torch.tensor([v]) for k, v in ex.items()}
    before = model.lm_head.weight.detach().clone()
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.lm_head.weight)


def test_deterministic_given_the_seed():
    from rehearsal.model import build_model, train_sentencepiece, training_text

    lines = training_text(0)
    assert train_sentencepiece(lines) == train_sentencepiece(lines)
    a, b, c = build_model(300, 0), build_model(300, 0), build_model(300, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


@pytest.mark.filterwarnings("ignore")
def test_cli_is_idempotent_and_leaves_no_temporaries(standins, capsys):
    from rehearsal.__main__ import main

    stamp = (standins / ".complete").read_text()
    mtime = (standins / "meta-llama/Llama-2-7b-hf" / "model.safetensors").stat().st_mtime_ns
    assert main([str(standins)]) == 0
    assert capsys.readouterr().out.startswith("up to date")
    assert (standins / ".complete").read_text() == stamp
    assert (standins / "meta-llama/Llama-2-7b-hf" / "model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in standins.parent.iterdir() if p.name.startswith(".")]
