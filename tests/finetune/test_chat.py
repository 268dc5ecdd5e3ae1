"""The chat format and label mask, against golden strings, for two EOS conventions; a long
example costs memory by max_length, not by its text, and encodes as the whole text would."""
import random
import time
import tracemalloc

import pytest
from tiny_fixtures import CORPUS, make_tokenizer

from finetune import chat
from finetune.chat import IGNORE_INDEX, chat_prefix, encode_example, render, single_turn


@pytest.mark.parametrize("eos", ["<|im_end|>", "</s>"])
def test_golden_text_and_labels(eos):
    tok = make_tokenizer(eos)
    enc = encode_example(tok, "What is the capital of France?", "Paris", max_length=512)
    assert tok.decode(enc["input_ids"]) == (
        f"<|user|>\nWhat is the capital of France?\n<|assistant|>\nParis{eos}")
    assert render(single_turn("What is the capital of France?", "Paris"), eos) == tok.decode(enc["input_ids"])
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


def whole_text_encoding(tok, prompt, response, max_length):
    """The encoding as it was before the cut: all of the text tokenized, then truncated (each
    content stripped, as the reference renders it)."""
    prefix, response = chat_prefix(prompt), response.strip()
    enc = tok(prefix + response, add_special_tokens=True, return_offsets_mapping=True)
    ids = list(enc["input_ids"]) + [tok.eos_token_id]
    labels = [t if end > len(prefix) and end > start else IGNORE_INDEX
              for t, (start, end) in zip(enc["input_ids"], enc["offset_mapping"])]
    labels.append(tok.eos_token_id)
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def long_text(seed: int, n_chars: int, kind: str) -> str:
    rng = random.Random(seed)
    words = " ".join(CORPUS).replace("\n", " ").split() + ["Paris", "1234567", "x" * 40, "\u00e9t\u00e9"]
    seps = {"prose": [" ", " ", " ", "\n", ", ", "  "], "spaces": [" " * 30, "\n\n\n", "\t "],
            "glued": ["", "", "-"]}[kind]
    out, size = [], 0
    while size < n_chars:
        piece = rng.choice(words) + rng.choice(seps)
        out.append(piece)
        size += len(piece)
    return "".join(out)


@pytest.mark.parametrize("max_length", [4, 64, 300])
@pytest.mark.parametrize("kind", ["prose", "spaces", "glued"])
@pytest.mark.parametrize("chars_per_token", [None, 1])  # 1: the prefix has to double, twice or more
def test_a_long_example_encodes_as_the_whole_text_truncated(monkeypatch, kind, max_length, chars_per_token):
    if chars_per_token:
        monkeypatch.setattr(chat, "CHARS_PER_TOKEN", chars_per_token)
    tok = make_tokenizer()
    for seed, (n_prompt, n_response) in enumerate([(30, 60_000), (3_000, 40_000), (20_000, 200),
                                                   (200, 1_500), (0, 9_000)]):
        prompt = long_text(seed, n_prompt, kind)[:n_prompt]
        response = long_text(100 + seed, n_response, kind)[:n_response]
        got = encode_example(tok, prompt, response, max_length)
        assert got == whole_text_encoding(tok, prompt, response, max_length), (kind, seed)


def test_a_5mb_response_costs_memory_by_max_length_not_by_the_text():
    tok = make_tokenizer()
    response = ("The quick brown fox jumps over the lazy dog. " * 120_000)[:5_000_000]
    tracemalloc.start()
    start = time.perf_counter()
    try:
        enc = encode_example(tok, "Summarize this article in one sentence.", response, max_length=512)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(enc["input_ids"]) == 512 and enc["labels"][-1] == enc["input_ids"][-1]
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # the 5 MB text itself is not counted
    assert elapsed < 5.0, f"{elapsed:.1f} s"


CONVERSATION = [{"role": "system", "content": "Be brief. "},
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": " Paris"},
                {"role": "user", "content": "And of Spain?\n"},
                {"role": "assistant", "content": "Madrid"}]


def reference_labels(tok, messages, max_length):
    """open-instruct's encode_with_messages_format, as its masking works: the whole text
    tokenized (truncated to max_length), then each non-assistant message masked from the token
    count of the text before it to the token count of the text through it (and the following
    "<|assistant|>\\n" tag)."""
    def concat(ms):
        text = ""
        for m in ms:
            if m["role"] == "assistant":
                text += "<|assistant|>\n" + m["content"].strip() + tok.eos_token + "\n"
            else:
                text += f"<|{m['role']}|>\n" + m["content"].strip() + "\n"
        return text

    def n_tokens(text):
        return len(tok(text, max_length=max_length, truncation=True)["input_ids"])

    ids = tok(concat(messages).strip(), max_length=max_length, truncation=True)["input_ids"]
    labels = list(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            start = 0 if i == 0 else n_tokens(concat(messages[:i]))
            so_far = concat(messages[:i + 1])
            if i + 1 < len(messages) and messages[i + 1]["role"] == "assistant":
                so_far += "<|assistant|>\n"
            end = n_tokens(so_far)
            labels[start:end] = [IGNORE_INDEX] * len(labels[start:end])
            if end >= max_length:
                break
    return ids, labels


@pytest.mark.parametrize("eos", ["<|im_end|>", "</s>"])
def test_a_conversation_trains_on_every_assistant_turn(eos):
    tok = make_tokenizer(eos)
    enc, info = chat.encode_messages(tok, CONVERSATION, 512)
    text = ("<|system|>\nBe brief.\n<|user|>\nWhat is the capital of France?\n<|assistant|>\n"
            f"Paris{eos}\n<|user|>\nAnd of Spain?\n<|assistant|>\nMadrid{eos}")
    assert render(CONVERSATION, eos) == text == tok.decode(enc["input_ids"])
    trained = [t for t, label in zip(enc["input_ids"], enc["labels"]) if label != IGNORE_INDEX]
    assert tok.decode(trained) == f"Paris{eos}\nMadrid{eos}"
    assert (enc["input_ids"], enc["labels"]) == reference_labels(tok, CONVERSATION, 512)
    assert info == {"turns": 2, "turns_kept": 2, "tokens_kept": len(enc["input_ids"]),
                    "tokens": len(enc["input_ids"])}


def test_a_long_conversation_keeps_its_beginning_as_the_reference():
    tok = make_tokenizer()
    full, _ = chat.encode_messages(tok, CONVERSATION, 512)
    for max_length in range(4, len(full["input_ids"])):
        enc, info = chat.encode_messages(tok, CONVERSATION, max_length)
        ids, labels = reference_labels(tok, CONVERSATION, max_length)
        assert enc is None if all(x == IGNORE_INDEX for x in labels) else (
            (enc["input_ids"], enc["labels"]) == (ids, labels)), max_length
        assert info["tokens"] == len(full["input_ids"]) and info["tokens_kept"] == max_length
        assert info["turns_kept"] == (1 if max_length >= full["input_ids"].index(
            tok.eos_token_id) + 1 else 0)


def test_plain_template_is_the_reference_prompt_completion_format():
    tok = make_tokenizer("</s>")
    for prompt, completion, text in [("Translate: cat", "chat", "Translate: cat chat</s>"),
                                     ("Translate: cat\n", "chat", "Translate: cat\nchat</s>")]:
        enc, _ = chat.encode_messages(tok, single_turn(prompt, completion), 64, "plain")
        assert tok.decode(enc["input_ids"]) == text
        trained = [t for t, label in zip(enc["input_ids"], enc["labels"]) if label != IGNORE_INDEX]
        assert tok.decode(trained).strip() == "chat</s>"
    with pytest.raises(ValueError, match="one user and one assistant"):
        chat.segments(CONVERSATION, "</s>", "plain")
    with pytest.raises(ValueError, match="role 'bot'"):
        chat.segments([{"role": "bot", "content": "x"}], "</s>")
