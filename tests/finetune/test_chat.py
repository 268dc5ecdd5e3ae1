"""The chat format and label mask, against golden strings, for two EOS conventions."""
import pytest
from tiny_fixtures import make_tokenizer

from finetune.chat import IGNORE_INDEX, encode_example, render


@pytest.mark.parametrize("eos", ["<|im_end|>", "</s>"])
def test_golden_text_and_labels(eos):
    tok = make_tokenizer(eos)
    enc = encode_example(tok, "What is the capital of France?", "Paris", max_length=512)
    assert tok.decode(enc["input_ids"]) == (
        f"<|user|>\nWhat is the capital of France?\n<|assistant|>\nParis{eos}")
    assert render("What is the capital of France?", "Paris", eos) == tok.decode(enc["input_ids"])
    trained = [t for t, label in zip(enc["input_ids"], enc["labels"]) if label != IGNORE_INDEX]
    assert tok.decode(trained) == f"Paris{eos}"
    # Labels equal the inputs where they are not masked, and the mask is one prefix.
    first = next(i for i, label in enumerate(enc["labels"]) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in enc["labels"][:first])
    assert enc["labels"][first:] == enc["input_ids"][first:]
    assert enc["input_ids"][-1] == tok.eos_token_id


def test_multiline_response_keeps_every_response_token():
    tok = make_tokenizer()
    enc = encode_example(tok, "Q", "line one\nline two", max_length=512)
    trained = [t for t, label in zip(enc["input_ids"], enc["labels"]) if label != IGNORE_INDEX]
    assert tok.decode(trained) == "line one\nline two<|im_end|>"


def test_truncation_and_dropping():
    tok = make_tokenizer()
    full = encode_example(tok, "What is the capital of France?", "Paris is the capital.", 512)
    cut = encode_example(tok, "What is the capital of France?", "Paris is the capital.", len(full["input_ids"]) - 2)
    assert len(cut["input_ids"]) == len(full["input_ids"]) - 2
    assert cut["labels"] == full["labels"][:-2]
    prompt_len = sum(1 for label in full["labels"] if label == IGNORE_INDEX)
    assert encode_example(tok, "What is the capital of France?", "Paris is the capital.", prompt_len) is None


def test_tokenizer_without_eos_is_an_error():
    tok = make_tokenizer()
    tok.eos_token = None
    with pytest.raises(ValueError, match="EOS"):
        encode_example(tok, "a", "b", 64)
