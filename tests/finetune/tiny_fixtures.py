"""Tiny test models and mixtures, and the fixtures built on them, shared by tests/finetune and
tests/baselines (each conftest imports the fixtures): a tiny Llama saved as an HF folder with a
byte-level BPE tokenizer trained in-test (EOS `<|im_end|>` like SmolLM2), and a small
instruction mixture."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

CORPUS = [
    "<|user|>\nWhat is the capital of France?\n<|assistant|>\nParis",
    "Answer the question. Question: how many legs does a spider have? Answer: eight",
    "Summarize this article in one sentence. The quick brown fox jumps over the lazy dog.",
    "0123456789 ,.;:!?()[]{}'\" abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]


def make_tokenizer(eos: str = "<|im_end|>"):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[eos, "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos, pad_token="<pad>")


def make_tiny_model_dir(path: Path, eos: str = "<|im_end|>") -> str:
    """A random 2-layer Llama (hidden 64) and its tokenizer, saved with save_pretrained."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer(eos)
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                         max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def write_mixture(path: Path, n: int = 24) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"The answer is {2 * i}."}],
             "source": "arith" if i % 2 else "words"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def mixture_path(tmp_path):
    return write_mixture(tmp_path / "mix.jsonl", n=24)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine oversubscribed
    OpenMP threads make a millisecond step take seconds."""
    import torch

    torch.set_num_threads(1)
