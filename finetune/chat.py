"""The chat format every method trains on, and the label mask that keeps the loss on the response.

PROTOCOL.md: `<|user|>\n{prompt}\n<|assistant|>\n{response}</s>`, labels -100 on everything but
the response. `</s>` is the tokenizer's own EOS token (SmolLM2: `<|im_end|>`, Llama-2: `</s>`),
appended as its id so it cannot be split into pieces. The template text is tokenized together
with the response (one call, with character offsets), so the tokens are those the model sees at
inference; a token is a label when it ends inside the response.
"""
from __future__ import annotations

IGNORE_INDEX = -100


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
    enc = tokenizer(prefix + response, add_special_tokens=True, return_offsets_mapping=True)
    ids = list(enc["input_ids"]) + [tokenizer.eos_token_id]
    boundary = len(prefix)
    labels = []
    for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        # Special tokens the tokenizer adds (BOS) have empty spans and belong to the prompt.
        labels.append(token_id if end > boundary and end > start else IGNORE_INDEX)
    labels.append(tokenizer.eos_token_id)
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}
