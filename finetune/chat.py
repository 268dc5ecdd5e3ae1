"""The chat format every method trains on, and the label mask that keeps the loss on the response.

PROTOCOL.md: `<|user|>\n{prompt}\n<|assistant|>\n{response}</s>`, labels -100 on everything but
the response. `</s>` is the tokenizer's own EOS token (SmolLM2: `<|im_end|>`, Llama-2: `</s>`),
appended as its id so it cannot be split into pieces. The template text is tokenized together
with the response (one call, with character offsets), so the tokens are those the model sees at
inference; a token is a label when it ends inside the response.
"""
from __future__ import annotations

IGNORE_INDEX = -100
# encode_example tokenizes a prefix of the text, not all of it (a 5 MB response would cost
# gigabytes of token offsets, to keep max_length of them): CHARS_PER_TOKEN characters per token
# of max_length (generous: text averages ~4), doubled until enough tokens end at least
# SAFE_MARGIN characters before the cut, where the cut can no longer change them.
CHARS_PER_TOKEN = 16
SAFE_MARGIN = 1024


def chat_prefix(prompt: str) -> str:
    """The text before the response: what an evaluation prompt of a chat-tuned model looks like."""
    return f"<|user|>\n{prompt}\n<|assistant|>\n"


def render(prompt: str, response: str, eos_token: str) -> str:
    """The full training text, as a string (for logs and golden tests)."""
    return f"{chat_prefix(prompt)}{response}{eos_token}"


def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> dict | None:
    """Token ids and labels of one example, truncated to `max_length` tokens.

    Returns None when nothing trainable is left (empty response, or the prompt alone fills
    `max_length`): such an example would only add padding to a batch.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token: the chat format "
                         "needs one to end the response")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the chat format needs a fast tokenizer (character offsets for the mask)")
    prefix = chat_prefix(prompt)
    input_ids, offsets, whole = _tokenize_head(tokenizer, prefix + response, max_length)
    ids = input_ids + ([tokenizer.eos_token_id] if whole else [])
    boundary = len(prefix)
    labels = []
    for token_id, (start, end) in zip(input_ids, offsets):
        # Special tokens the tokenizer adds (BOS) have empty spans and belong to the prompt.
        labels.append(token_id if end > boundary and end > start else IGNORE_INDEX)
    labels += [tokenizer.eos_token_id] if whole else []
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def _tokenize_head(tokenizer, text: str, max_length: int) -> tuple[list[int], list[tuple[int, int]], bool]:
    """(ids, character offsets, whole): the first tokens of `text` as tokenizing all of it gives
    them, at least `max_length` of them unless `whole` (then: every token of the text).

    Memory is bounded by max_length, not by the text: a prefix of the text is tokenized, and a
    token counts only if it ends at least SAFE_MARGIN characters before the cut (tokenizers
    look ahead a word or a merge, not a kilobyte); with too few such tokens the prefix doubles.
    """
    limit = CHARS_PER_TOKEN * max_length + SAFE_MARGIN
    while True:
        whole = len(text) <= limit
        enc = tokenizer(text if whole else text[:limit], add_special_tokens=True,
                        return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        if whole:
            return ids, offsets, True
        safe = 0  # the leading tokens that end before the margin (BOS's empty span included)
        while safe < len(ids) and safe < max_length and offsets[safe][1] <= limit - SAFE_MARGIN:
            safe += 1
        if safe >= max_length:
            return ids[:safe], offsets[:safe], False
        limit *= 2
