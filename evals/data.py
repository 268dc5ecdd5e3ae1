"""`prepare_benchmark`: fetch, normalise, select the deterministic subset, and write it for the DAG.

Per-benchmark config keys (the DAG's schema mirrors these; defaults are each module's DEFAULTS):
  source          "packaged" (default, offline) | "hub" | "path"
  path            local file in the hub's schema (required when source is "path")
  train_path      TyDiQA: local GoldP train file, the shot pool (the reference's setting)
  hub_id          override of the hub dataset id
  seed            subset seed (default 42)
  n_items         GSM / MMLU / HumanEval: number of items (null = all)
  split           MMLU: "test" (default, Table 1) or "validation" (the grid's dev score, --eval_dev)
  n_per_task      BBH: items per subtask (default 40); `tasks`: list of subtasks (default all)
  stop_at_blank_line  BBH: stop generating at "\n\n" (default false: the reference never stopped)
  n_per_language  TyDiQA: items per language (default 100)
  bpb_items       the answer-likelihood items (evals.answer_likelihood), in the benchmark's own
                  subset unit (n_items; BBH per subtask; TyDiQA per language); absent: the same
                  items as the accuracy evaluation
  shots, max_new_tokens, batch_size          used at run time (see evals.suite)
  max_prompt_tokens                           MMLU: drop shots until the prompt fits (2048)
  max_context_tokens                          TyDiQA: passage truncation (1024, as the reference)
  n_samples, temperature, top_p, k, timeout_s HumanEval sampling and execution (timeout 3 s)
Output: `out_path` (JSONL, one normalised item a line, with its source index) and
`<out_path>.manifest.json` (origin, indices, few-shot exemplars, sha256 of the items file).
"""
from __future__ import annotations

import hashlib
import json
from importlib import import_module
from pathlib import Path

from artifacts.atomic import write_json, write_jsonl

BENCHMARKS = ("mmlu", "gsm", "bbh", "tydiqa", "humaneval")
SCHEMA_VERSION = 1


class DataUnavailable(RuntimeError):
    """A benchmark has no data under this configuration (TyDiQA offline without a path)."""


def benchmark_module(name: str):
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {BENCHMARKS}")
    return import_module(f"evals.{name}")


def manifest_path(items_path: Path) -> Path:
    items_path = Path(items_path)
    return items_path.with_name(items_path.name + ".manifest.json")


def read_manifest(name: str, items_path: Path) -> dict:
    """The manifest `prepare_benchmark` wrote beside `items_path`."""
    path = manifest_path(items_path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no manifest {path} beside {items_path}; "
                                "prepare it with evals.prepare_benchmark")
    return json.loads(path.read_text(encoding="utf-8"))


def subset_key(name: str) -> str:
    """The config key that sizes benchmark `name`'s subset (n_items, n_per_task, n_per_language)."""
    return benchmark_module(name).SUBSET_KEY


def prepare_benchmark(name: str, cfg: dict, cache_dir: Path, out_path: Path,
                      select_cfg: dict | None = None) -> dict:
    """Write the normalised, subset items of benchmark `name` to `out_path`; return the manifest.

    `select_cfg` overrides keys of `cfg` for the choice of items only (the answer-likelihood
    subset, `{subset_key(name): bpb_items}`): the few-shot exemplars, which GSM and TyDiQA draw
    from the same random stream as their items, still follow `cfg`, so that an item's prompt is
    the accuracy evaluation's.

    When the data cannot exist under this config (TyDiQA offline without `path`), the items file
    is empty and the manifest carries `unavailable: <reason>`, so the DAG writes an honest empty
    cell instead of failing or evaluating a substitute.
    """
    module = benchmark_module(name)
    cfg = cfg or {}
    out_path = Path(out_path)
    try:
        items, fewshot, origin = module.load(cfg, Path(cache_dir))
    except DataUnavailable as err:
        write_jsonl(out_path, [])
        manifest = {"benchmark": name, "schema_version": SCHEMA_VERSION, "unavailable": str(err),
                    "source": cfg.get("source", "packaged"), "n_items": 0}
        write_json(manifest_path(out_path), manifest)
        return manifest
    indices = module.select(items, {**cfg, **(select_cfg or {})})
    selected = [{**items[i], "source_index": i} for i in indices]
    write_jsonl(out_path, selected)
    manifest = {
        "benchmark": name,
        "schema_version": SCHEMA_VERSION,
        "source": cfg.get("source", "packaged"),
        "origin": origin,
        "seed": cfg.get("seed", module.DEFAULTS["seed"]),
        "n_total": len(items),
        "n_items": len(selected),
        "indices": indices,
        **({"select_overrides": select_cfg} if select_cfg else {}),
        "fewshot": fewshot,
        "items_sha256": hashlib.sha256(out_path.read_bytes()).hexdigest(),
    }
    write_json(manifest_path(out_path), manifest)
    return manifest
