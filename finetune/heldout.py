"""A held-out slice of each mixture, and the instruction loss on it.

At 135M most benchmarks sit near chance, yet the loss on held-out responses still separates the
methods, so the embedded default reports it next to the benchmarks and uses it as the dev score
of the hyperparameter grid. The split is deterministic (seeded shuffle), and the loss is the mean
NLL per response token under exactly the training format and mask (finetune.chat).
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from finetune.chat import IGNORE_INDEX, encode_row
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


@torch.no_grad()
def heldout_loss(model, tokenizer, data_path: Path, max_length: int, batch_size: int = 8) -> dict:
    """Mean NLL per response token (nats) over the held-out file, summed across examples.

    "samples" holds each example's summed NLL and response-token count (id: its line in the
    file, from 0), so that analysis.intervals can bootstrap the loss over examples; the score is
    their total NLL over their total tokens."""
    rows = read_rows(data_path)
    examples = [(i, e) for i, r in enumerate(rows)
                if (e := encode_row(tokenizer, r, max_length))]
    if not examples:
        raise ValueError(f"{data_path}: no held-out example has a response token")
    device = next(model.parameters()).device
    samples = []
    for start in range(0, len(examples), batch_size):
        batch = [e for _, e in examples[start:start + batch_size]]
        width = max(len(e["input_ids"]) for e in batch)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([e["input_ids"] + [pad] * (width - len(e["input_ids"])) for e in batch])
        mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                             for e in batch])
        labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"]))
                               for e in batch])
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(device)
        per_token = torch.nn.functional.cross_entropy(
            shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE_INDEX,
            reduction="none")  # (batch, positions); 0 where ignored
        nll = per_token.double().sum(dim=1).tolist()
        tokens = (shift_labels != IGNORE_INDEX).sum(dim=1).tolist()
        samples += [{"id": i, "nll": n, "tokens": int(t)}
                    for (i, _), n, t in zip(examples[start:start + batch_size], nll, tokens)]
    total, n_tokens = sum(s["nll"] for s in samples), sum(s["tokens"] for s in samples)
    loss = total / n_tokens
    return {"benchmark": "heldout_loss", "metric": "nll_per_token", "score": loss,
            "perplexity": math.exp(loss), "n_items": len(samples), "n_tokens": n_tokens,
            "settings": {"max_length": max_length, "data": Path(data_path).name},
            "samples": samples}
