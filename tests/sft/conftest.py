"""Tiny Llama models built from a config (no downloads) and a seeded token batch."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 256

# Tiny matmuls gain nothing from threads, and on a shared machine thread contention made
# these tests 30x slower.
torch.set_num_threads(1)


def tiny_llama(seed: int = 0, hidden: int = 64, intermediate: int = 128, layers: int = 2,
               dtype: torch.dtype = torch.float32, tied: bool = False) -> LlamaForCausalLM:
    """``tied``: the LM head shares the input embedding's weight (SmolLM2, Gemma)."""
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=tied)
    return LlamaForCausalLM(config).to(dtype).eval()


def token_batch(seed: int, batch: int = 4, length: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=generator)


def train_steps(model, optimizer, selector, batch_seeds) -> None:
    """SFT training steps on token_batch(seed) for each seed, the selector after each step."""
    for seed in batch_seeds:
        ids = token_batch(seed)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        selector.step()


@pytest.fixture
def model():
    return tiny_llama()


class Tokens(torch.utils.data.Dataset):
    """``n`` seeded token rows as a Trainer dataset (labels = input ids)."""

    def __init__(self, n: int, length: int = 12):
        self.ids = token_batch(0, batch=n, length=length)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}
