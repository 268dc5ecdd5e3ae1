"""Held-out split and loss: deterministic, disjoint, and equal to the model's own token loss."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune.chat import encode_row
from finetune.heldout import encode_heldout, heldout_loss, split_heldout
from finetune.mixtures.io import read_rows


def test_split_is_deterministic_and_disjoint(tmp_path, mixture_path):
    a = (tmp_path / "a.train.jsonl", tmp_path / "a.heldout.jsonl")
    b = (tmp_path / "b.train.jsonl", tmp_path / "b.heldout.jsonl")
    assert split_heldout(mixture_path, *a, n_heldout=5, seed=3) == (19, 5)
    split_heldout(mixture_path, *b, n_heldout=5, seed=3)
    assert a[1].read_text() == b[1].read_text()
    train, held = read_rows(a[0]), read_rows(a[1])
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in held}
    assert sorted(map(key, train + held)) == sorted(map(key, read_rows(mixture_path)))


def test_split_refuses_to_take_everything(tmp_path, mixture_path):
    with pytest.raises(ValueError, match="cannot spare 24"):
        split_heldout(mixture_path, tmp_path / "t", tmp_path / "h", n_heldout=24)


def test_loss_matches_per_example_reference_and_ignores_padding(tiny_model_dir, mixture_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batched = heldout_loss(model, tokenizer, mixture_path, max_length=64, batch_size=7)
    single = heldout_loss(model, tokenizer, mixture_path, max_length=64, batch_size=1)
    assert batched["score"] == pytest.approx(single["score"], rel=1e-5)

    total, tokens = 0.0, 0
    for i, row in enumerate(read_rows(mixture_path)):
        ex = encode_row(tokenizer, row, 64)
        labels = torch.tensor([ex["labels"]])
        n = int((labels[:, 1:] != -100).sum())
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ex["input_ids"]]), labels=labels).loss
        total, tokens = total + loss.item() * n, tokens + n
        # each example's summed NLL and token count, whatever batch it was padded in
        for result in (batched, single):
            sample = result["samples"][i]
            assert sample["id"] == i and sample["tokens"] == n
            assert sample["nll"] == pytest.approx(loss.item() * n, rel=1e-5)
    assert batched["score"] == pytest.approx(total / tokens, rel=1e-5)
    assert batched["n_tokens"] == tokens and batched["n_items"] == 24
    samples = batched["samples"]
    assert batched["score"] == sum(s["nll"] for s in samples) / sum(s["tokens"] for s in samples)


def _summed_nll(model, ex) -> tuple[float, int]:
    labels = torch.tensor([ex["labels"]])
    n = int((labels[:, 1:] != -100).sum())
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ex["input_ids"]]), labels=labels).loss
    return loss.item() * n, n


def test_no_example_is_dropped_a_long_prompt_loses_its_start(tmp_path, tiny_model_dir, mixture_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = read_rows(mixture_path)[:3]
    rows[1] = {**rows[1], "messages": [{"role": "user", "content": "word " * 200 + "What is 1 plus 1?"},
                                       *rows[1]["messages"][1:]]}  # the prompt alone fills max_length
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = heldout_loss(model, tokenizer, path, max_length=64, batch_size=2)
    assert [s["id"] for s in result["samples"]] == [0, 1, 2] and result["n_items"] == 3

    # the long example scores its whole reply, after the last 64 - len(reply) tokens
    whole = encode_row(tokenizer, rows[1], 10_000)
    n_reply = sum(label != -100 for label in whole["labels"])
    assert len(whole["input_ids"]) > 64 and n_reply < 63
    cut = {"input_ids": whole["input_ids"][-64:], "labels": whole["labels"][-64:]}
    assert encode_heldout(tokenizer, rows[1], 64)["input_ids"] == cut["input_ids"]
    nll, n = _summed_nll(model, cut)
    assert result["samples"][1]["tokens"] == n == n_reply
    assert result["samples"][1]["nll"] == pytest.approx(nll, rel=1e-5)
    assert result["n_tokens"] == sum(s["tokens"] for s in result["samples"])


def _row(*turns: str) -> dict:
    return {"messages": [{"role": ("user", "assistant")[k % 2], "content": t} for k, t in enumerate(turns)]}


def test_a_reply_longer_than_max_length_keeps_its_head_after_the_prompt(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = _row("What is 2 plus 2?", "four " * 100)
    whole = encode_row(tokenizer, row, 10_000)
    first = next(i for i, label in enumerate(whole["labels"]) if label != -100)
    ex = encode_heldout(tokenizer, row, 32)
    # the prompt's last token, then the reply's first 31 tokens: each of them scored
    assert ex["input_ids"] == whole["input_ids"][first - 1:first + 31]
    assert ex["labels"][0] == -100 and all(label != -100 for label in ex["labels"][1:])
    # a short example is its training encoding, untouched
    short = encode_row(tokenizer, _row("What is 2 plus 2?", "four"), 64)
    assert short is not None and encode_heldout(tokenizer, _row("What is 2 plus 2?", "four"), 64) == short


def test_a_conversation_keeps_its_replies_and_loses_the_start_of_its_first_prompt(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = _row("word " * 100 + "What is 2 plus 2?", "4", "And 3 plus 3?", "6")
    whole = encode_row(tokenizer, row, 10_000)
    ex = encode_heldout(tokenizer, row, 64)
    assert ex["input_ids"] == whole["input_ids"][-64:]  # both replies, the prompt's start cut
    assert sum(label != -100 for label in ex["labels"]) == sum(label != -100 for label in whole["labels"])
