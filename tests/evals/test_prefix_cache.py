"""Few-shot prefixes computed once (evals.prefix_cache): the same scores and the same generated
text as lm-eval's HFLM path, item by item, for fewer tokens through the model.

Log-likelihoods are compared at a tolerance, not bitwise: the cached path multiplies other
shapes (the prefix alone, then the suffixes against its keys), so float sums round differently.
"""
import pytest
import torch
from lm_eval.api.instance import Instance

from evals.hflm import ReferenceDecodeHFLM
from evals.prefix_cache import shared_prefix_groups

SHOTS = {
    "arith": "".join(f"Question: How many apples are {i} and {i}? Answer: The answer is {2 * i}.\n\n"
                     for i in range(1, 4)),
    "options": "".join(f"Options: (A) {i} (B) {i + 1} (C) {i + 2}\nLet's think step by step. "
                       f"So the answer is (A).\n\n" for i in range(3)),
}


def _contexts():
    """Two few-shot prefixes with four items each, and two prompts that share nothing."""
    items = [f"{shots}Question: How many apples are {n}? Answer:"
             for shots in SHOTS.values() for n in (7, 11, 12, 30)]
    return items + ["def f(x):\n    return x + 1\n", "Passage: Jibu Swali"]


@pytest.fixture
def lm(tiny_lm):
    model, tokenizer = tiny_lm
    return ReferenceDecodeHFLM(pretrained=model, tokenizer=tokenizer, batch_size=3)


class _TokenCounter:
    """Tokens through the model's embedding: what the cache saves."""

    def __init__(self, model):
        self.n = 0
        self.handle = model.get_input_embeddings().register_forward_hook(self)

    def __call__(self, module, args, output):
        self.n += args[0].numel()


def _both_ways(lm, run):
    counts = {}
    results = {}
    for cached in (False, True):
        lm.use_prefix_cache = cached
        counter = _TokenCounter(lm.model)
        try:
            results[cached] = run()
        finally:
            counter.handle.remove()
        counts[cached] = counter.n
    return results[False], results[True], counts


def test_groups_share_a_long_head_and_respect_each_members_limit():
    head = list(range(100, 140))
    seqs = [head + [1, 2], [5] * 50, head + [3], head[:35] + [9] * 10, [5] * 49 + [6]]
    groups = shared_prefix_groups(seqs, [len(s) - 1 for s in seqs], min_shared=32)
    # the three sequences with `head` share 35 tokens (not under half of 40); [5]*50 and
    # [5]*49+[6] share 49 tokens, as many as their limits allow
    assert sorted((p, sorted(m)) for p, m in groups) == [(35, [0, 2, 3]), (49, [1, 4])]
    limited = shared_prefix_groups(seqs, [len(s) - 1 for s in seqs[:4]] + [20], min_shared=32)
    assert (49, [1, 4]) not in [(p, sorted(m)) for p, m in limited]
    # a head shrunk to under half closes the group; under min_shared, no group at all
    assert shared_prefix_groups([head + [1], head + [2], head[:18] + [200] * 30],
                                [40, 40, 47], min_shared=16) == [(40, [0, 1])]
    assert shared_prefix_groups([[1] * 10, [1] * 10 + [2]], [9, 10], min_shared=32) == []


def test_loglikelihoods_equal_the_uncached_path_item_by_item(lm):
    contexts = _contexts()
    pairs = [(c, cont) for c in contexts for cont in (" 14", " The answer is 22.", " (B)")]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    plain, cached, tokens = _both_ways(lm, lambda: lm.loglikelihood(requests, disable_tqdm=True))
    assert len(cached) == len(plain) == len(pairs)
    for (lp, greedy), (lp_ref, greedy_ref) in zip(cached, plain):
        assert lp == pytest.approx(lp_ref, abs=1e-4, rel=1e-5) and greedy == greedy_ref
    assert tokens[True] < 0.6 * tokens[False]  # each few-shot prefix went through once


def test_the_output_layer_runs_only_where_a_continuation_is_scored(lm):
    """HFLM computes logits at every input position; here one-token answers need one position
    an item (a batch's rows differ in length, so a few more), and a shared prefix none."""
    contexts = _contexts()
    requests = [Instance("loglikelihood", {}, (c, cont), i)
                for i, (c, cont) in enumerate((c, cont) for c in contexts for cont in (" A", " B"))]
    rows = {}
    head = lm.model.get_output_embeddings()

    def count(module, args, output):
        rows["n"] += args[0].numel() // args[0].shape[-1]

    for cached in (False, True):
        lm.use_prefix_cache, rows["n"] = cached, 0
        handle = head.register_forward_hook(count)
        try:
            lm.loglikelihood(requests, disable_tqdm=True)
        finally:
            handle.remove()
        rows[cached] = rows["n"]
    inputs = sum(len(lm.tok_encode(c + " A")) - 1 for c in contexts)
    assert rows[False] >= inputs  # HFLM: every position of every distinct input (and padding)
    # cached: one row a shared prefix (its cache is all it gives), and each batch's rows from its
    # earliest scored position (rows differ in length by a few tokens)
    assert rows[True] <= 5 * len(contexts) < 0.1 * rows[False]


def test_a_request_asked_again_is_answered_from_the_first_time(lm):
    """MMLU's accuracy asks every letter, its answer likelihood the gold one again: the second
    call runs only the prompts it has not seen, and answers as a fresh model would."""
    contexts = _contexts()
    first = [Instance("loglikelihood", {}, (c, cont), i)
             for i, (c, cont) in enumerate((c, cont) for c in contexts[:4] for cont in (" 14", " 22"))]
    again = [Instance("loglikelihood", {}, (c, " 22"), i) for i, c in enumerate(contexts[:4] + contexts[-1:])]
    lm.loglikelihood(first, disable_tqdm=True)
    counter = _TokenCounter(lm.model)
    try:
        answers = lm.loglikelihood(again, disable_tqdm=True)
    finally:
        counter.handle.remove()
    assert counter.n == len(lm.tok_encode(contexts[-1] + " 22")) - 1  # the one new prompt only
    lm.use_prefix_cache = False
    fresh = lm.loglikelihood(again, disable_tqdm=True)
    assert [lp for lp, _ in answers] == pytest.approx([lp for lp, _ in fresh], abs=1e-4, rel=1e-5)
    assert [g for _, g in answers] == [g for _, g in fresh]


def test_a_prompt_cut_from_the_left_is_scored_as_lm_eval_cuts_it(lm):
    lm._max_length = 40  # every context is longer: lm-eval keeps the last 41 tokens
    requests = [Instance("loglikelihood", {}, (c, " The answer is 22."), i)
                for i, c in enumerate(_contexts()[:4])]
    plain, cached, _ = _both_ways(lm, lambda: lm.loglikelihood(requests, disable_tqdm=True))
    assert [g for _, g in cached] == [g for _, g in plain]
    assert [lp for lp, _ in cached] == pytest.approx([lp for lp, _ in plain], abs=1e-4, rel=1e-5)


def test_greedy_generations_equal_the_uncached_path_item_by_item(lm):
    gen = {"until": ["\n\n"], "max_gen_toks": 12, "do_sample": False}
    requests = [Instance("generate_until", {}, (c, dict(gen)), i) for i, c in enumerate(_contexts())]
    plain, cached, tokens = _both_ways(lm, lambda: lm.generate_until(requests, disable_tqdm=True))
    assert cached == plain and any(text for text in plain)
    assert tokens[True] < 0.8 * tokens[False]


def test_sampled_generation_keeps_lm_eval_batches(lm):
    gen = {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": True, "temperature": 0.7}
    requests = [Instance("generate_until", {}, (c, dict(gen)), i) for i, c in enumerate(_contexts())]

    def run():
        torch.manual_seed(0)
        return lm.generate_until(requests, disable_tqdm=True)

    plain, cached, tokens = _both_ways(lm, run)
    assert cached == plain and tokens[True] == tokens[False]
