"""Answer likelihood: bits per byte of a benchmark's reference answer under its own prompt.

At small scale (135M parameters, a few training steps) accuracy sits at the floor, yet the
probability the model gives the reference answer still moves. "<bench>_bpb" scores it:

    bits(item) = sum over the answer's tokens of -log2 p(token | prompt + earlier answer tokens)
    score      = sum of bits / sum of UTF-8 bytes of the scored text     (lower is better)

The prompt is the accuracy evaluation's own (the module's `build_docs`, same items file and
few-shot exemplars); the answer is the module's `reference_answer(doc)`: the gold solution in the
exemplars' format (GSM), the target (BBH), the canonical solution (HumanEval), the gold letter
" A".." D" (MMLU; bits per byte rather than the letter's probability, so that every benchmark has
one unit), the first gold span (TyDiQA).

Engine: lm-eval's `loglikelihood` on the suite's one HFLM, one request (context=prompt,
continuation=answer) per item: one forward pass each, batched and tokenized by lm-eval exactly as
MMLU's accuracy scoring is (the whole text is encoded and split at the prompt's length; a prompt
too long for the model is cut from the left). The simplest faithful route: a task YAML with
`output_type: loglikelihood` would add lm-eval's task machinery and a metric hook for the same
numbers. lm-eval moves a prompt's trailing whitespace into the continuation before tokenizing
(HumanEval prompts end in "\\n"); those characters are then scored too, so the bytes counted are
those of the text whose tokens are scored.

Writes {"benchmark": "<bench>_bpb", "metric": "bits_per_byte", "score", "n_items", "settings",
"wall_s", "samples": [{"id", "bits", "bytes"}]}; a benchmark without data (TyDiQA offline) or
without references has score None and a "note".
"""
from __future__ import annotations

import math
import time
from importlib.metadata import version
from pathlib import Path

from artifacts.jsonl import read_jsonl
from evals.data import DataUnavailable, benchmark_module, read_manifest

SUFFIX = "_bpb"
METRIC = "bits_per_byte"


def is_answer_likelihood(name: str) -> bool:
    return name.endswith(SUFFIX)


def base_benchmark(name: str) -> str:
    """"gsm_bpb" -> "gsm"."""
    if not is_answer_likelihood(name):
        raise ValueError(f"{name!r} is not an answer-likelihood name (<bench>{SUFFIX})")
    return name[: -len(SUFFIX)]


def scored_text(context: str, continuation: str) -> str:
    """The text whose tokens lm-eval scores: the continuation with the context's trailing
    whitespace moved in front (`TemplateLM._encode_pair`)."""
    return context[len(context.rstrip()):] + continuation


def _empty(name: str, settings: dict, note: str) -> dict:
    return {"benchmark": name, "metric": METRIC, "score": None, "n_items": 0,
            "settings": settings, "wall_s": 0.0, "samples": [], "note": note}


def answer_likelihood(lm, name: str, cfg: dict, items_path: Path) -> dict:
    """Bits per byte of benchmark `base_benchmark(name)`'s reference answers in `items_path`
    (written by prepare_benchmark) under its prompts, scored by the lm-eval model `lm`."""
    from lm_eval.api.instance import Instance

    bench = base_benchmark(name)
    module = benchmark_module(bench)
    manifest = read_manifest(bench, items_path)
    settings = {**module.DEFAULTS, **cfg, "lm_eval_version": version("lm-eval"),
                "items_sha256": manifest.get("items_sha256"), "origin": manifest.get("origin"),
                "source": manifest.get("source")}
    if manifest.get("unavailable"):
        return _empty(name, settings, manifest["unavailable"])
    docs = module.build_docs(read_jsonl(items_path), manifest["fewshot"], cfg, lm.tokenizer)
    if not docs:
        return _empty(name, settings, f"no items in {items_path}")
    try:
        pairs = [(doc["prompt"], module.reference_answer(doc)) for doc in docs]
    except DataUnavailable as err:
        return _empty(name, settings, str(err))
    requests = [Instance("loglikelihood", doc, pair, i, (name, i, 1))
                for i, (doc, pair) in enumerate(zip(docs, pairs))]
    start = time.perf_counter()
    results = lm.loglikelihood(requests, disable_tqdm=True)
    wall_s = time.perf_counter() - start
    samples = [{"id": doc["id"], "bits": -logprob / math.log(2),
                "bytes": len(scored_text(*pair).encode("utf-8"))}
               for doc, pair, (logprob, _) in zip(docs, pairs, results)]
    total_bytes = sum(s["bytes"] for s in samples)
    return {"benchmark": name, "metric": METRIC,
            "score": sum(s["bits"] for s in samples) / total_bytes if total_bytes else None,
            "n_items": len(samples), "settings": {**settings, "max_length": lm.max_length},
            "wall_s": round(wall_s, 3), "samples": samples}
