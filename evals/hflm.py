"""lm-eval's HFLM with open-instruct's way of turning generated tokens into text.

lm-eval decodes the generated tokens on their own. A SentencePiece tokenizer (Llama-2, Mistral)
treats the first token of a sequence as word-initial and drops its leading space when decoding,
so a continuation whose first token is "▁▁▁▁return" comes back as "   return": three spaces,
an IndentationError in every HumanEval program, and a lost space at the start of every
generated answer. open-instruct (eval/utils.py `generate_completions`) instead decodes the
prompt and the prompt followed by the generation, both with special tokens skipped, and keeps
the characters of the second string past the length of the first. `decode_continuation` does
that; `ReferenceDecodeHFLM` applies it to every generation request (all generation tasks).

How it hooks into lm-eval (0.4.x `HFLM.generate_until`): the batch's prompt ids are known only
in `_model_generate`, and the text of each row is made by a `tok_decode` call on that row's
generated ids right after it, row by row. `_model_generate` therefore queues, per row, the
unpadded prompt ids with the generated ids, and `tok_decode` uses the queued prompt when the ids
it is given are exactly the next queued generation; any other call decodes as before.
It builds on `evals.prefix_cache.PrefixCachedHFLM`, which computes shared few-shot prefixes once.
"""
from __future__ import annotations

from collections import deque

from evals.prefix_cache import PrefixCachedHFLM


def decode_continuation(tokenizer, prompt_ids: list[int], generated_ids: list[int],
                        skip_special_tokens: bool = True) -> str:
    """Text of `generated_ids` after `prompt_ids`: decode(prompt + generated) with the decoded
    prompt's length cut off the front (open-instruct's rule; skips special tokens as it does)."""
    prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=skip_special_tokens)
    full_text = tokenizer.decode(list(prompt_ids) + list(generated_ids),
                                 skip_special_tokens=skip_special_tokens)
    return full_text[len(prompt_text):]


class ReferenceDecodeHFLM(PrefixCachedHFLM):
    """HFLM whose generations are decoded together with their prompt (see module docstring)."""

    def __init__(self, *args, **kwargs):
        self._pending: deque[tuple[list[int], list[int]]] = deque()
        super().__init__(*args, **kwargs)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        out = super()._model_generate(context, max_length, stop, **generation_kwargs)
        mask = generation_kwargs.get("attention_mask")
        width = context.shape[1]
        self._pending.clear()
        for row in range(out.shape[0]):
            prompt = context[row] if mask is None else context[row][mask[row].bool()]
            self._pending.append((prompt.tolist(), out[row, width:].tolist()))
        return out

    def tok_decode(self, tokens, skip_special_tokens: bool = True):
        if self._pending and not isinstance(tokens, int) and list(tokens) == self._pending[0][1]:
            prompt_ids, generated_ids = self._pending.popleft()
            return decode_continuation(self.tokenizer, prompt_ids, generated_ids,
                                       skip_special_tokens)
        return super().tok_decode(tokens, skip_special_tokens=skip_special_tokens)
