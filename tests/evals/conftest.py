"""Shared fixtures: a tiny random Llama with a byte-level BPE tokenizer trained in-test, and the
packaged-artifact cache ($SFT_CACHE, else ./.cache) for the pinned lm-eval few-shot files."""
from __future__ import annotations

import pytest
import torch

from artifacts.packaged import default_cache_dir

_CORPUS = [
    "Answer the following questions.", "Question: How many apples? Answer: The answer is 42.",
    "The following are multiple choice questions (with answers) about", "Options: (A) (B) (C)",
    "Let's think step by step. So the answer is (A).", "def f(x):\n    return x + 1\n",
    "Passage: Question: Answer: Jibu Swali Вопрос Ответ", "0123456789 ,.;:!?()[]{}'\"",
]


@pytest.fixture(scope="session")
def cache_dir():
    return default_cache_dir()


@pytest.fixture(scope="session")
def tiny_lm():
    """(model, tokenizer): a random 2-layer Llama; every byte encodes, so any prompt works."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=len(tokenizer), max_position_embeddings=8192,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None)
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer
