"""The chat format every method trains on, and the label mask that keeps the loss on the
assistant's turns.

As the reference trained the paper's models (open-instruct's, and ducdauge/sft-llm's,
`encode_with_messages_format`): a conversation, a list of {role, content} messages (roles
system, user, assistant), renders whole as

    <|system|>\\n{system}\\n<|user|>\\n{user}\\n<|assistant|>\\n{reply}</s>\\n<|user|>\\n...{reply}</s>

each content stripped and the whole text stripped, `</s>` being the tokenizer's own EOS token
text (SmolLM2: `<|im_end|>`, Llama-2: `</s>`), which the tokenizer reads as its one special
token. The text is tokenized in one call (with character offsets), so the tokens are those the
model sees at inference. Every assistant turn is trained on: its content, its EOS and the newline
after it (the reference masks by token counts of the turns before each user turn, which leaves
that newline to the reply); system and user turns and the `<|assistant|>\\n` tags are masked
(-100). A token is a label when it ends inside a trained span.

Truncation as the reference's: the tokenized conversation is cut to its first `max_length`
tokens (its tokenizer call truncates the end), so the later turns are lost, never the start; an
example left with no trained token is dropped (the reference filters those out as well).

A row in the `plain` template (data in the reference's `prompt`/`completion` layout: one user
and one assistant message) renders as its `encode_with_prompt_completion_format`: prompt, a space
when neither side has whitespace at the join, completion, EOS, with the loss on the completion
and EOS. No chat tags, as there.
"""
from __future__ import annotations

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")
TEMPLATES = ("chat", "plain")
# encode_messages tokenizes a prefix of the text, not all of it (a 5 MB response would cost
# gigabytes of token offsets, to keep max_length of them): CHARS_PER_TOKEN characters per token
# of max_length (generous: text averages ~4), doubled until enough tokens end at least
# SAFE_MARGIN characters before the cut, where the cut can no longer change them.
CHARS_PER_TOKEN = 16
SAFE_MARGIN = 1024
# Tokens past the cut are counted (for the train summary) a chunk of text at a time, ids only.
COUNT_CHUNK = 1 << 16


def chat_prefix(prompt: str) -> str:
    """The text before a single-turn reply: what an evaluation prompt of a chat-tuned model
    looks like."""
    return f"<|user|>\n{prompt.strip()}\n<|assistant|>\n"


def single_turn(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def segments(messages: list[dict], eos_token: str, template: str = "chat") -> list[tuple[str, bool]]:
    """The training text as consecutive pieces, each with whether it is trained on."""
    if template == "plain":
        if [m["role"] for m in messages] != ["user", "assistant"]:
            raise ValueError("the plain (prompt/completion) template takes one user and one "
                             f"assistant message, got roles {[m['role'] for m in messages]}")
        prompt, completion = messages[0]["content"], messages[1]["content"]
        joined = prompt.endswith((" ", "\n", "\t")) or completion.startswith((" ", "\n", "\t"))
        return [(prompt if joined else prompt + " ", False), (completion + eos_token, True)]
    if template != "chat":
        raise ValueError(f"unknown template {template!r} (one of {TEMPLATES})")
    pieces = []
    for m in messages:
        role, content = m["role"], m["content"].strip()
        if role == "assistant":
            pieces += [("<|assistant|>\n", False), (content + eos_token + "\n", True)]
        elif role in ROLES:
            pieces.append((f"<|{role}|>\n{content}\n", False))
        else:
            raise ValueError(f"message role {role!r} is not one of {ROLES}")
    if pieces:  # the reference strips the whole text: the contents are stripped, so only the end
        text, trained = pieces[-1]
        pieces[-1] = (text.rstrip(), trained)
    return pieces


def render(messages: list[dict], eos_token: str, template: str = "chat") -> str:
    """The full training text, as a string (for logs and golden tests)."""
    return "".join(text for text, _ in segments(messages, eos_token, template))


def encode_messages(tokenizer, messages: list[dict], max_length: int, template: str = "chat",
                    count_cut: bool = True) -> tuple[dict | None, dict]:
    """(token ids and labels truncated to `max_length` tokens, or None when no trained token is
    left; what was kept: tokens, tokens_kept, turns, turns_kept).

    `turns` counts assistant turns; a turn is kept when all of it is within the kept tokens.
    `tokens` is the whole conversation's length; past the cut it is counted a chunk at a time
    (ids only), and with `count_cut=False` not at all (then None)."""
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token: the chat format "
                         "needs one to end each reply")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the chat format needs a fast tokenizer (character offsets for the mask)")
    pieces = segments(messages, tokenizer.eos_token, template)
    text = "".join(t for t, _ in pieces)
    spans, reply_ends, pos = [], [], 0  # trained character spans; where each reply's EOS ends
    for piece, trained in pieces:
        if trained:
            spans.append((pos, pos + len(piece)))
            reply_ends.append(pos + len(piece.rstrip("\n")))
        pos += len(piece)
    ids, offsets, whole = _tokenize_head(tokenizer, text, max_length)
    if whole and spans and tokenizer.eos_token_id not in ids:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} does not read its EOS text "
                         f"{tokenizer.eos_token!r} as its EOS token")
    labels, k = [], 0
    for token_id, (start, end) in zip(ids, offsets):
        while k < len(spans) and end > spans[k][1]:
            k += 1
        # Special tokens the tokenizer adds (BOS) have empty spans and are never trained on.
        inside = k < len(spans) and end > spans[k][0] and end > start
        labels.append(token_id if inside else IGNORE_INDEX)
    n_whole = len(ids) if whole else None
    ids, labels, offsets = ids[:max_length], labels[:max_length], offsets[:max_length]
    kept_chars = max((end for _, end in offsets), default=0)
    info = {"turns": len(spans), "turns_kept": sum(end <= kept_chars for end in reply_ends),
            "tokens_kept": len(ids), "tokens": n_whole}
    if n_whole is None and count_cut:
        info["tokens"] = _count_tokens(tokenizer, text, len(ids), kept_chars)
    if all(label == IGNORE_INDEX for label in labels):
        return None, info
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}, info


def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> dict | None:
    """One prompt and its reply, encoded as a one-turn conversation (see encode_messages)."""
    return encode_messages(tokenizer, single_turn(prompt, response), max_length, count_cut=False)[0]


def encode_row(tokenizer, row: dict, max_length: int) -> dict | None:
    """A prepared mixture row ({"messages", "template"?}), encoded (see encode_messages)."""
    return encode_messages(tokenizer, row["messages"], max_length, row.get("template", "chat"),
                           count_cut=False)[0]


def _count_tokens(tokenizer, text: str, n_kept: int, kept_chars: int) -> int:
    """Tokens of the whole text: the kept ones plus those of the rest, tokenized a chunk at a
    time without special tokens (exact up to a token at each chunk's seam)."""
    rest = text[kept_chars:]
    n = n_kept
    for start in range(0, len(rest), COUNT_CHUNK):
        n += len(tokenizer(rest[start:start + COUNT_CHUNK], add_special_tokens=False)["input_ids"])
    return n


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
