"""Held-out split and loss: deterministic, disjoint, and equal to the model's own token loss."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune.chat import encode_row
from finetune.heldout import heldout_loss, split_heldout
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


def test_samples_skip_examples_without_response_tokens_and_keep_their_line(tmp_path, tiny_model_dir,
                                                                           mixture_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = read_rows(mixture_path)[:3]
    rows[1] = {**rows[1], "messages": [{"role": "user", "content": "word " * 200},
                                       *rows[1]["messages"][1:]]}  # the prompt alone fills max_length
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = heldout_loss(model, tokenizer, path, max_length=64, batch_size=2)
    assert [s["id"] for s in result["samples"]] == [0, 2] and result["n_items"] == 2
