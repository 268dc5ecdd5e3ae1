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


_SP_CORPUS = [
    'def add(a, b):\n    """Return a + b."""\n    return a + b\n',
    'def neg(x):\n    """Return -x."""\n    return -x\n',
    "    return x\n    if x:\n        return None\n", "Answer the following questions.",
    "Question: How many apples? Answer: So the answer is 42.", "Passage: Helsinki on Suomen",
    "The following are multiple choice questions (with answers) about astronomy.",
]


@pytest.fixture(scope="session")
def sp_lm():
    """(model, tokenizer, processor): a real SentencePiece BPE model (byte fallback, dummy
    prefix, as Llama-2's) trained here in a second, wrapped as transformers' LlamaTokenizer (BOS
    added, as Llama-2's tokenizer config says), and
    a random 2-layer Llama of its vocabulary size. `processor` is the raw SentencePiece model."""
    import io

    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_SP_CORPUS * 20), model_writer=proto, model_type="bpe",
        vocab_size=400, byte_fallback=True, add_dummy_prefix=True, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, split_digits=True, normalization_rule_name="identity",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False, minloglevel=2,
        num_threads=1)
    processor = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    # the vocab and merges transformers' own SentencePiece converter extracts (it needs protobuf
    # to read the model file; the processor gives the same pieces in id order)
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab), add_bos_token=True)
    tokenizer.pad_token = tokenizer.eos_token  # as open-instruct sets for Llama
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(vocab),
                         max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                         pad_token_id=2)
    return LlamaForCausalLM(config).eval(), tokenizer, processor
