import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256)
# Per LoRA rank, sum over the 7 projections of (d_in + d_out), times 2 layers (kv width 32).
TINY_PER_RANK = 2 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 3 * (64 + 128))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**TINY)).save_pretrained(path)
    return str(path)
