"""A held-out slice of each mixture, and the instruction loss on it.

At 135M most benchmarks sit near chance, yet the loss on held-out responses still separates the
methods, so the embedded default reports it next to the benchmarks and uses it as the dev score
of the hyperparameter grid. The split is deterministic (seeded shuffle), and the loss is the mean
NLL per response token under exactly the training format and mask (finetune.chat).

No example is dropped: one longer than `max_length` keeps its reply and loses the start of its
prompt, as a benchmark's context is cut from the left (lm-eval). Where the replies from the
first one on do not fit (a long reply, a long conversation), the window starts at the token
before the first reply and is cut on the right, as training cuts: no example is left without
a scored token.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from finetune.chat import IGNORE_INDEX, encode_row, segments
from finetune.mixtures.io import read_rows, write_rows


def split_heldout(mixture: Path, train_out: Path, heldout_out: Path, n_heldout: int,
                  seed: int = 0) -> tuple[int, int]:
    """Move `n_heldout` rows (seeded choice) of a prepared mixture into a held-out file."""
    rows = read_rows(mixture)
    if n_heldout >= len(rows):
        raise ValueError(f"{mixture}: {len(rows)} rows cannot spare {n_heldout} held-out rows; "
                         "lower heldout.n_examples or raise the mixture's max_examples")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_heldout])
    write_rows(heldout_out, [r for i, r in enumerate(rows) if i in held])
    write_rows(train_out, [r for i, r in enumerate(rows) if i not in held])
    return len(rows) - n_heldout, n_heldout


def encode_heldout(tokenizer, row: dict, max_length: int) -> dict | None:
    """A mixture row's training encoding (finetune.chat) cut to a `max_length` window that
    holds as much of its reply as fits: the prompt is cut from the left first (see module
    docstring). None only where no reply has a token."""
    pieces = segments(row["messages"], tokenizer.eos_token, row.get("template", "chat"))
    head = sum(len(text) for text, _ in pieces[:next((k for k, (_, t) in enumerate(pieces) if t),
                                                       len(pieces))])
    # Enough tokens for everything before the first reply (a token spans at least one
    # character; +2 for special tokens) and max_length tokens after it.
    full = encode_row(tokenizer, row, head + 2 + max_length)
    if full is None:
        return None
    ids, labels = full["input_ids"], full["labels"]
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    # The window ends at the example's end if everything from its first reply on fits after one
    # prompt token, else it starts at the prompt's last token (a token is scored from the one
    # before it).
    start = max(0, min(len(ids) - max_length, first - 1))
    ids, labels = ids[start:start + max_length], labels[start:start + max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def _first_scored(labels: list[int]) -> int:
    """The first position (from 1: position 0 has nothing before it) whose token is scored."""
    return next(j for j in range(1, len(labels)) if labels[j] != IGNORE_INDEX)


@torch.no_grad()
def heldout_loss(model, tokenizer, data_path: Path, max_length: int, batch_size: int = 8) -> dict:
    """Mean NLL per response token (nats) over the held-out file, summed across examples.

    "samples" holds each example's summed NLL and scored-token count (id: its line in the
    file, from 0), so that analysis.intervals can bootstrap the loss over examples; the score is
    their total NLL over their total tokens ("n_tokens", a column of the tables)."""
    rows = read_rows(data_path)
    examples = [(i, encode_heldout(tokenizer, r, max_length)) for i, r in enumerate(rows)]
    empty = [i for i, e in examples if e is None]
    if empty:
        raise ValueError(f"{data_path}: held-out line(s) {empty[:5]} have no reply token to score")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Batches of similar lengths pad little; an example's loss does not depend on its batch.
    by_length = sorted(examples, key=lambda x: len(x[1]["input_ids"]))
    samples = []
    for start in range(0, len(by_length), batch_size):
        chunk = by_length[start:start + batch_size]
        batch = [e for _, e in chunk]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.tensor([e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in batch])
        mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                             for e in batch])
        labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"]))
                               for e in batch])[:, 1:].to(device)
        # Logits only from the first position that predicts a response token on: the output
        # layer (a 49k vocabulary at 135M) costs as much as a quarter of the model per position.
        keep = width - min(_first_scored(e["labels"]) for e in batch) + 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       logits_to_keep=keep).logits.float()[:, :-1]
        labels = labels[:, -(keep - 1):]
        per_token = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
            reduction="none")  # (batch, positions); 0 where ignored
        nll = per_token.double().sum(dim=1).tolist()
        tokens = (labels != IGNORE_INDEX).sum(dim=1).tolist()
        samples += [{"id": i, "nll": n, "tokens": int(t)} for (i, _), n, t in zip(chunk, nll, tokens)]
    samples.sort(key=lambda s: s["id"])
    total, n_tokens = sum(s["nll"] for s in samples), sum(s["tokens"] for s in samples)
    loss = total / n_tokens
    return {"benchmark": "heldout_loss", "metric": "nll_per_token", "score": loss,
            "perplexity": math.exp(loss), "n_items": len(samples), "n_tokens": n_tokens,
            "settings": {"max_length": max_length, "data": Path(data_path).name},
            "samples": samples}
