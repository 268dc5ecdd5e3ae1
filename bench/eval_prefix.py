"""One model's evaluation with and without few-shot prefix reuse (evals.prefix_cache).

    python -m bench.eval_prefix [--model .cache/models/smollm2-135m] [--config config/config.yaml]
        [--data results/data/evals] [--only mmlu,gsm_bpb] [--threads 2] [--rounds 1]

Evaluates the model on every benchmark of the config's `evals` section whose prepared items are
in `--data` (`<bench>.jsonl`, and `<bench>.bpb.jsonl` for its "<bench>_bpb" answer likelihood:
the DAG's rule prepare_benchmark writes them), through `evals.run_suite` as the `evaluate` rule
does, once with prefix reuse and once without, interleaved. Prints each benchmark's seconds both
ways and the ratio, the tokens that went through the model both ways (padding included: it is
computed too), the totals, and whether the scores agree (same items, same answers).
Timing is honest only on a quiet machine; the untuned model costs what a trained one does.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
import yaml

from bench.timing import machine_line


def evaluations(config: dict, data_dir: Path, only: list[str] | None) -> tuple[dict, dict]:
    """(name -> config, name -> items file) for each benchmark with prepared items."""
    settings, files = {}, {}
    for bench, cfg in config["evals"].items():
        cfg = {k: v for k, v in cfg.items() if k != "bpb_items"}
        for name, path in [(bench, data_dir / f"{bench}.jsonl"),
                           (f"{bench}_bpb", data_dir / f"{bench}.bpb.jsonl")]:
            if path.exists() and (only is None or name in only):
                settings[name], files[name] = cfg, path
    if not settings:
        raise SystemExit(f"no prepared benchmark items in {data_dir} (`snakemake "
                         f"{data_dir}/mmlu.jsonl` prepares MMLU's, ...)")
    return settings, files


def timed_suite(model, tokenizer, settings: dict, files: dict, cached: bool) -> dict:
    """name -> (seconds, score, per-item samples, tokens through the model) of one run_suite
    pass; tokens are counted at the input embedding (each generated token once more)."""
    from evals import run_suite

    out = {}
    tokens = [0]

    def count(module, args, output):
        tokens[0] += args[0].numel()

    handle = model.get_input_embeddings().register_forward_hook(count)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-eval-prefix-") as tmp:
            for name in settings:
                tokens[0] = 0
                start = time.perf_counter()
                result = run_suite(model, tokenizer, {name: settings[name]}, {name: files[name]},
                                   Path(tmp), prefix_cache=cached)[name]
                out[name] = (time.perf_counter() - start, result["score"], result["samples"], tokens[0])
    finally:
        handle.remove()
    return out


def same_scores(a, b) -> bool:
    """Scores within float rounding, and every item's answer the same (generated text, chosen
    letter); bits per item within 1e-3."""
    (_, score_a, samples_a, _), (_, score_b, samples_b, _) = a, b
    if (score_a is None) != (score_b is None):
        return False
    if score_a is not None and not math.isclose(score_a, score_b, rel_tol=1e-4, abs_tol=1e-6):
        return False
    for x, y in zip(samples_a, samples_b):
        for key in set(x) & set(y):
            if key == "bits":
                if not math.isclose(x[key], y[key], rel_tol=1e-4, abs_tol=1e-3):
                    return False
            elif key != "output" or not isinstance(x[key], dict):  # MMLU's: log-probabilities
                if json.dumps(x[key], sort_keys=True) != json.dumps(y[key], sort_keys=True):
                    return False
    return len(samples_a) == len(samples_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=".cache/models/smollm2-135m")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--data", default="results/data/evals")
    parser.add_argument("--only", help="comma-separated evaluations, e.g. mmlu,gsm_bpb")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    settings, files = evaluations(config, Path(args.data), args.only and args.only.split(","))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    print(machine_line(), f"device {device}")
    seconds = {True: {n: [] for n in settings}, False: {n: [] for n in settings}}
    tokens = {True: {}, False: {}}  # the same every round
    agree = {}
    for rnd in range(args.rounds):
        order = [True, False] if rnd % 2 == 0 else [False, True]  # interleaved, who goes first rotates
        runs = {cached: timed_suite(model, tokenizer, settings, files, cached) for cached in order}
        for name in settings:
            for cached in (True, False):
                seconds[cached][name].append(runs[cached][name][0])
                tokens[cached][name] = runs[cached][name][3]
            agree[name] = agree.get(name, True) and same_scores(runs[True][name], runs[False][name])
    print(f"{'evaluation':<16}{'uncached s':>12}{'cached s':>10}{'ratio':>8}"
          f"{'uncached tokens':>17}{'cached tokens':>15}{'ratio':>8}  same results")

    def row(name, plain, cached, plain_tokens, cached_tokens, same):
        print(f"{name:<16}{plain:>12.1f}{cached:>10.1f}{cached / plain if plain else math.nan:>8.2f}"
              f"{plain_tokens:>17,}{cached_tokens:>15,}"
              f"{cached_tokens / plain_tokens if plain_tokens else math.nan:>8.2f}  {same}")

    for name in settings:
        row(name, min(seconds[False][name]), min(seconds[True][name]), tokens[False][name],
            tokens[True][name], agree[name])
    row("total", sum(min(v) for v in seconds[False].values()),
        sum(min(v) for v in seconds[True].values()), sum(tokens[False].values()),
        sum(tokens[True].values()), all(agree.values()))


if __name__ == "__main__":
    main()
