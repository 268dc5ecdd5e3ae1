"""Few-shot prefixes computed once: an HFLM that reuses the key/value cache of a shared prompt head.

Most of a few-shot prompt is its benchmark's exemplars (MMLU's 5 shots of a subject, GSM's 8,
BBH's 3 per subtask), the same tokens for every item, yet lm-eval's HFLM runs every prompt from
its first token. `PrefixCachedHFLM` groups a call's requests by the longest token prefix they
share (`shared_prefix_groups`), runs that prefix once with `use_cache=True`, and runs each item's
remaining tokens on a copy of its key/value cache (transformers' DynamicCache):

- log-likelihoods (`_loglikelihood_tokens`, MMLU's choices and every "<bench>_bpb"): the inputs
  HFLM would build (the last max_length tokens of context + continuation, minus the last), one
  forward per distinct input (MMLU's four letters share theirs), batched with the prefix cache
  repeated over the batch and the suffixes right-padded under an attention mask; inputs that
  share no prefix run the same way without a cache. Either way the output layer runs only from
  the batch's first continuation position on (`logits_to_keep`): HFLM computes and
  log-softmaxes logits at every position, of which a one-letter answer needs one (at 135M the
  49k-vocabulary output layer is about a fifth of a position's multiply-adds);
- greedy generation (`generate_until`): HFLM's batches, each row laid out as prefix, padding,
  its own tokens (the padding masked, so positions count as without it) on the prefix cache
  repeated over the batch; `model.generate` runs only the tokens the cache does not cover;
- a log-likelihood request asked again (MMLU's gold letter, by its accuracy and then by
  "mmlu_bpb") is answered from the first time, for as long as the loaded model lives.

What runs HFLM's own path unchanged: generation that shares fewer than MIN_SHARED_TOKENS
tokens with another prompt, sampled generation (one row at a time would draw other random
numbers than HFLM's batch), a prompt that lm-eval cut from the left for generation, a
continuation longer than the model's window, `batch_size="auto"`.
The scores equal the uncached path's up to float rounding (other matmul shapes, so not
bitwise); tests/evals/test_prefix_cache.py compares them item by item.

lm-eval has no such reuse (its HFLM notes it as a TODO); vLLM's prefix caching is a different
engine. Written here against HFLM's documented request tuples and `_model_generate` hook.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM

# Fewer shared tokens save less than grouping costs (one more forward, a smaller batch).
MIN_SHARED_TOKENS = 32
# Prefix caches kept alive while lm-eval's length-sorted generation batches mix subtasks;
# one evicted is recomputed (bounds memory: a 7B model's 1k-token prefix is ~0.5 GB).
MAX_LIVE_PREFIXES = 4


def _common_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def shared_prefix_groups(sequences: list[list[int]], limits: list[int],
                         min_shared: int = MIN_SHARED_TOKENS) -> list[tuple[int, list[int]]]:
    """(P, indices): groups of two or more sequences whose first P tokens are the same, with
    min_shared <= P <= limits[i] for every member i (the tokens a member needs outside the
    cache). Sequences in lexicographic order put each shared head together; a group closes when
    the next sequence would shrink its prefix below min_shared or to under half (a different
    set of shots that happens to share a header). Sequences in no group are left out."""
    order = sorted(range(len(sequences)), key=lambda i: sequences[i])
    groups: list[tuple[int, list[int]]] = []
    members: list[int] = []
    shared = 0

    def close():
        if len(members) >= 2 and shared >= min_shared:
            groups.append((shared, members))

    for i in order:
        if members:
            common = min(shared, limits[i], _common_length(sequences[members[-1]], sequences[i]))
            if common >= min_shared and 2 * common >= shared:
                members.append(i)
                shared = common
                continue
            close()
        members, shared = [i], limits[i]
    if members:
        close()
    return groups


class PrefixCachedHFLM(HFLM):
    """HFLM that computes each shared prompt prefix once (module docstring);
    `use_prefix_cache = False` gives HFLM's own path."""

    use_prefix_cache = True

    def __init__(self, *args, **kwargs):
        self._prefixes: dict[int, set[tuple[int, ...]]] = {}
        self._live: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._answers: dict[tuple, tuple[float, bool]] = {}  # (max_length, ctx, cont) -> answer
        super().__init__(*args, **kwargs)

    # --- shared pieces -------------------------------------------------------------------
    def _cached(self) -> bool:
        return self.use_prefix_cache and self.backend == "causal" and str(self.batch_size) != "auto"

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                              enabled=self.mixed_precision_dtype is not None)

    @torch.no_grad()
    def _prefix_cache(self, prefix: tuple[int, ...]):
        """The key/value cache of `prefix` (kept for the MAX_LIVE_PREFIXES last used)."""
        if prefix in self._live:
            self._live.move_to_end(prefix)
            return self._live[prefix]
        with self._autocast():
            # only the cache is used: the output layer runs at one position, not every one
            out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True,
                             logits_to_keep=1)
        self._live[prefix] = out.past_key_values
        while len(self._live) > MAX_LIVE_PREFIXES:
            self._live.popitem(last=False)
        return out.past_key_values

    # --- log-likelihoods -----------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """Also answers each distinct request once for this model: MMLU's accuracy and its
        answer likelihood ask for the same gold-letter requests. (lm-eval's CachingLM keeps
        answers in a file keyed by the request alone, not the model: a file left behind would
        answer for another model, so the memo lives with the loaded model instead.)"""
        if not self._cached() or not requests:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        keys = [(self.max_length, tuple(ctx), tuple(cont)) for _, ctx, cont in requests]
        new = {}
        for request, key in zip(requests, keys):
            if key not in self._answers:
                new.setdefault(key, request)
        if new:
            answers = self._score_with_prefixes(list(new.values()), disable_tqdm, override_bs)
            self._answers.update(zip(new, answers))
        return [self._answers[key] for key in keys]

    def _score_with_prefixes(self, requests, disable_tqdm: bool, override_bs):
        # the input HFLM builds for each request, and the positions that score its continuation
        inputs = [(ctx + cont)[-(self.max_length + 1):][:-1] for _, ctx, cont in requests]
        distinct = list(dict.fromkeys(map(tuple, inputs)))
        where = {inp: u for u, inp in enumerate(distinct)}
        limits = [len(inp) for inp in distinct]
        for inp, (_, _, cont) in zip(inputs, requests):
            u = where[tuple(inp)]
            limits[u] = min(limits[u], len(inp) - len(cont))
        groups = shared_prefix_groups([list(d) for d in distinct], limits)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        users: dict[int, list[int]] = {}
        for r, inp in enumerate(inputs):
            users.setdefault(where[tuple(inp)], []).append(r)
        grouped = {u for _, members in groups for u in members}
        # inputs in no group run without a cache; a continuation longer than its input (cut
        # by the window) goes to HFLM's path
        alone = [u for u in range(len(distinct)) if u not in grouped and limits[u] >= 0]
        batch_size = int(override_bs or self.batch_size)
        for shared, members in groups + [(0, alone)]:
            if not members:
                continue
            cache = self._prefix_cache(distinct[members[0]][:shared]) if shared else None
            members = sorted(members, key=lambda u: -len(distinct[u]))
            for start in range(0, len(members), batch_size):
                batch = members[start:start + batch_size]
                # the batch's earliest suffix position that scores a continuation token
                first = min(limits[u] for u in batch) - shared
                logits = self._suffix_logits(cache, shared, [distinct[u][shared:] for u in batch], first)
                for row, u in zip(logits, batch):
                    suffix_len = len(distinct[u]) - shared
                    for r in users[u]:
                        results[r] = self._score(requests[r], row[:suffix_len - first])
        self._live.clear()
        rest = [r for r, res in enumerate(results) if res is None]
        if rest:
            for r, res in zip(rest, super()._loglikelihood_tokens(
                    [requests[r] for r in rest], disable_tqdm, override_bs)):
                results[r] = res
        return results

    @torch.no_grad()
    def _suffix_logits(self, prefix_cache, shared: int, suffixes: list[tuple[int, ...]],
                       first: int) -> torch.Tensor:
        """Logits of each suffix (after the cached prefix, or alone when `prefix_cache` is
        None) from suffix position `first` on, one right-padded batch."""
        width = max(len(s) for s in suffixes)
        ids = torch.zeros(len(suffixes), width, dtype=torch.long)
        mask = torch.zeros(len(suffixes), shared + width, dtype=torch.long)
        mask[:, :shared] = 1
        for i, s in enumerate(suffixes):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, shared:shared + len(s)] = 1
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(suffixes))
        with self._autocast():
            return self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                              past_key_values=cache, use_cache=cache is not None,
                              logits_to_keep=width - first).logits

    def _score(self, request, logits: torch.Tensor) -> tuple[float, bool]:
        """HFLM's answer for one request from its input's logits: (sum of the continuation's
        log-probabilities, whether greedy decoding gives the continuation)."""
        request_str, _, cont = request
        logprobs = F.log_softmax(logits[-len(cont):], dim=-1, dtype=self.softmax_dtype)
        target = torch.tensor(cont, device=logprobs.device)
        answer = (float(logprobs.gather(1, target[:, None]).sum()),
                  bool((logprobs.argmax(dim=-1) == target).all()))
        if request_str is not None:
            self.cache_hook.add_partial("loglikelihood", request_str, answer)
        return answer

    # --- generation ----------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False):
        if not self._cached() or not requests:
            return super().generate_until(requests, disable_tqdm)
        encoded = [self.tok_batch_encode([req.args[0]])[0][0].tolist() for req in requests]
        # a row needs its last token outside the cache: generate computes the next token from it
        for shared, members in shared_prefix_groups(encoded, [len(e) - 1 for e in encoded]):
            self._prefixes.setdefault(shared, set()).add(tuple(encoded[members[0]][:shared]))
        try:
            return super().generate_until(requests, disable_tqdm)
        finally:
            self._prefixes.clear()
            self._live.clear()

    def _registered_prefix(self, ids: list[int]) -> tuple[int, ...] | None:
        for shared, prefixes in self._prefixes.items():
            if len(ids) > shared and tuple(ids[:shared]) in prefixes:
                return tuple(ids[:shared])
        return None

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        mask = generation_kwargs.pop("attention_mask", None)
        rows = [context[i] if mask is None else context[i][mask[i].bool()]
                for i in range(context.shape[0])]
        prefixes = [self._registered_prefix(row.tolist()) for row in rows]
        greedy = not generation_kwargs.get("do_sample") and not generation_kwargs.get("temperature")
        if not greedy or any(p is None for p in prefixes):
            return super()._model_generate(context, max_length, stop, attention_mask=mask,
                                           **generation_kwargs)
        width = context.shape[1]
        generated: list[torch.Tensor | None] = [None] * len(rows)
        for prefix in dict.fromkeys(prefixes):
            members = [i for i, p in enumerate(prefixes) if p == prefix]
            outs = self._generate_after(prefix, [rows[i][len(prefix):] for i in members],
                                        max_length - width, stop, generation_kwargs)
            for i, out in zip(members, outs):
                generated[i] = out
        # HFLM's layout: the padded context, then each row's tokens padded to the longest
        full = torch.full((len(rows), width + max(len(g) for g in generated)),
                          self.tokenizer.pad_token_id, dtype=context.dtype, device=context.device)
        full[:, :width] = context
        for i, g in enumerate(generated):
            full[i, width:width + len(g)] = g
        return full

    def _generate_after(self, prefix: tuple[int, ...], suffixes: list[torch.Tensor],
                        max_new: int, stop, generation_kwargs: dict) -> list[torch.Tensor]:
        """Generated tokens of each row `prefix + suffix`, one batch on the prefix's cache. The
        padding goes between prefix and suffix, masked: `generate` numbers positions by the
        attention mask, so each row's tokens sit where they would alone."""
        width = max(len(s) for s in suffixes)
        shared = len(prefix)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(suffixes), shared + width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        ids[:, :shared], mask[:, :shared] = torch.tensor(prefix, device=self.device), 1
        for i, s in enumerate(suffixes):
            ids[i, shared + width - len(s):], mask[i, shared + width - len(s):] = s, 1
        cache = copy.deepcopy(self._prefix_cache(prefix))
        cache.batch_repeat_interleave(len(suffixes))
        out = super()._model_generate(ids, shared + width + max_new, stop, attention_mask=mask,
                                      past_key_values=cache, **dict(generation_kwargs))
        return list(out[:, shared + width:])
