"""The stand-in tokenizer is SentencePiece BPE, fast, and handles spaces as Llama-2's does."""
from __future__ import annotations

import pytest

from finetune.chat import IGNORE_INDEX, chat_prefix, encode_example

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tokenizer(standins):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(standins / "meta-llama/Llama-2-7b-hf")


@pytest.fixture(scope="module")
def sentencepiece_model(standins):
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(standins / "meta-llama/Llama-2-7b-hf" / "tokenizer.model"))


def test_fast_llama_tokenizer_with_llama2_special_tokens(tokenizer):
    assert type(tokenizer).__name__ == "LlamaTokenizer" and tokenizer.is_fast
    assert (tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token) == ("<unk>", "<s>", "</s>")
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.pad_token is None  # as Llama-2: finetune.train sets pad = eos
    ids = tokenizer("Hello")["input_ids"]
    assert ids[0] == 1 and ids[-1] != 2  # BOS added, EOS not


@pytest.mark.parametrize("text", [
    "def add(a, b):\n    return a + b",
    "Question: What is 12 plus 30?\nAnswer: 42",
    "<|user|>\nSort 5, 3, 9.\n<|assistant|>\n3, 5, 9",
    "Ответ: 96 километров",
    "Tab\tand  two spaces, 日本 (byte fallback)",
])
def test_same_pieces_as_sentencepiece(tokenizer, sentencepiece_model, text):
    """The fast tokenizer is the SentencePiece model: same ids (for text that does not start with
    a space; there the fast Metaspace adds no second "▁", as for Llama-2 under transformers 5)."""
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == sentencepiece_model.encode(text)
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_indentation_survives_prompt_plus_continuation(tokenizer):
    """Decoding prompt + continuation together keeps "    return x" intact (what evaluation
    does when it decodes the whole sequence, or cuts the decoded text at the prompt's length)."""
    prompt, continuation = "def f(x):\n", "    return x"
    ids = tokenizer(prompt + continuation)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids).count("▁▁▁▁") == 1
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text == prompt + continuation
    assert text[len(prompt):] == continuation


def test_known_pitfall_decoding_continuation_alone_drops_a_leading_space(tokenizer):
    """The pitfall: decoding only the continuation's ids strips one leading space, because the
    decoder removes the "▁" SentencePiece's dummy prefix would have added (Strip(left=1)), as
    Llama-2's tokenizer does. Four spaces of indentation come back as three, so a completion
    decoded on its own can break Python indentation; decode prompt + completion and cut instead."""
    prompt, continuation = "def f(x):\n", "    return x"
    ids = tokenizer(prompt + continuation)["input_ids"]
    n_prompt = len(tokenizer(prompt)["input_ids"])
    assert ids[:n_prompt] == tokenizer(prompt)["input_ids"]
    assert tokenizer.decode(ids[n_prompt:]) == "   return x"  # three spaces, not four
    assert tokenizer.decode(tokenizer(" x", add_special_tokens=False)["input_ids"]) == "x"


def test_chat_format_masks_the_prompt(tokenizer):
    """finetune.chat needs character offsets (a fast tokenizer) and an EOS token."""
    example = encode_example(tokenizer, "Add 2 and 3.", "2 + 3 = 5.", max_length=128)
    labels = [l for l in example["labels"] if l != IGNORE_INDEX]
    assert labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(labels[:-1]) == "2 + 3 = 5."
    n_prompt = len(tokenizer(chat_prefix("Add 2 and 3."))["input_ids"])
    assert all(l == IGNORE_INDEX for l in example["labels"][:n_prompt - 1])


@pytest.mark.parametrize("max_length", [16, 200])
def test_a_long_example_encodes_as_its_whole_text_truncated(tokenizer, monkeypatch, max_length):
    """encode_example tokenizes a prefix of a long text (memory by max_length, not by the text):
    with SentencePiece's Metaspace (no split at spaces, as Llama-2's) the tokens and the label
    mask are those of the whole text, truncated; CHARS_PER_TOKEN = 1 makes the prefix double."""
    from finetune import chat

    words = ["def", "f(x):\n", "    return", "x", "Ответ:", "96", "километров", "日本", "\t", "  "]
    text = " ".join(words[(i * 7) % len(words)] for i in range(4000))
    for per_token in (chat.CHARS_PER_TOKEN, 1):
        monkeypatch.setattr(chat, "CHARS_PER_TOKEN", per_token)
        for prompt, response in [("Q", text), (text[:5000], text), (text, "short")]:
            prefix = chat_prefix(prompt)
            enc = tokenizer(prefix + response, return_offsets_mapping=True)
            ids = (enc["input_ids"] + [tokenizer.eos_token_id])[:max_length]
            labels = ([t if end > len(prefix) and end > start else IGNORE_INDEX
                       for t, (start, end) in zip(enc["input_ids"], enc["offset_mapping"])]
                      + [tokenizer.eos_token_id])[:max_length]
            got = encode_example(tokenizer, prompt, response, max_length)
            if all(label == IGNORE_INDEX for label in labels):
                assert got is None
            else:
                assert (got["input_ids"], got["labels"]) == (ids, labels)
