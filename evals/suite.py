"""`run_suite`: evaluate one loaded model on several prepared benchmarks in one process.

Engine: lm-eval's `simple_evaluate` with one `HFLM` wrapping the already-loaded model, so the
import and load costs are paid once. The HFLM is `evals.hflm.ReferenceDecodeHFLM`, which decodes
each generation together with its prompt as open-instruct does (SentencePiece tokenizers would
otherwise lose the continuation's leading space). Each benchmark is one of our task YAMLs in `evals/tasks/`
(names prefixed `spiel_`, so they never collide with lm-eval's built-ins). We load the YAML with
lm-eval's own loader, point `dataset_kwargs.data_files` at the rendered docs of this run, and set
the generation settings from the benchmark config; lm-eval batches, generates, filters and
aggregates. One `simple_evaluate` call per benchmark, because batch size and seed are per benchmark.

Per benchmark, writes `out_dir/<name>.json`:
  {"benchmark", "metric", "score", "n_items", "settings", "wall_s", "samples": [...]}
where each sample holds the item id, prompt, output(s), extracted answer and correctness, plus
"breakdown" (per subtask / language) where the benchmark macro-averages, and "not_evaluated"
(subtask -> why) where a source lacks part of the benchmark (BBH offline).
A name "<bench>_bpb" writes `out_dir/<bench>_bpb.json`, the bits per byte of <bench>'s reference
answers under the same prompts (evals.answer_likelihood), through the same HFLM.
Benchmark modules may define `task_overrides(cfg)` (e.g. HumanEval's `repeats`), `metric_name(cfg)`
and `breakdown(records)`; all other hooks are required.
"""
from __future__ import annotations

import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from artifacts.atomic import write_json, write_jsonl
from artifacts.jsonl import read_jsonl
from evals.answer_likelihood import answer_likelihood, is_answer_likelihood
from evals.data import benchmark_module, read_manifest

TASKS_DIR = Path(__file__).parent / "tasks"


def _task_config(name: str, docs_path: Path, generation: dict | None, overrides: dict) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(TASKS_DIR / f"spiel_{name}.yaml", resolve_func=True)
    cfg["dataset_kwargs"] = {"data_files": {"test": str(docs_path)}}
    cfg.update(overrides)
    if generation is not None:  # the benchmark module owns them; the task YAML sets none
        cfg["generation_kwargs"] = generation
    return cfg


def _metric_name(module, cfg: dict) -> str:
    return module.metric_name(cfg) if hasattr(module, "metric_name") else module.METRIC


def _unavailable_cell(name: str, module, cfg: dict, manifest: dict) -> dict:
    return {"benchmark": name, "metric": _metric_name(module, cfg), "score": None, "n_items": 0,
            "note": manifest["unavailable"], "settings": {"source": manifest.get("source")},
            "samples": []}


def _evaluate_one(lm, task_manager, name: str, cfg: dict, items_path: Path, tmp: Path) -> dict:
    from lm_eval import simple_evaluate

    module = benchmark_module(name)
    manifest = read_manifest(name, items_path)
    if manifest.get("unavailable"):
        return _unavailable_cell(name, module, cfg, manifest)
    items = read_jsonl(items_path)
    docs = module.build_docs(items, manifest["fewshot"], cfg, lm.tokenizer)
    docs_path = tmp / f"{name}.jsonl"
    write_jsonl(docs_path, docs)
    generation = module.generation(cfg)
    overrides = module.task_overrides(cfg) if hasattr(module, "task_overrides") else {}
    task_cfg = _task_config(name, docs_path, generation, overrides)
    seed = cfg.get("seed", module.DEFAULTS["seed"])
    start = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=[task_cfg], task_manager=task_manager, log_samples=True,
                          bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed,
                          torch_random_seed=seed, fewshot_random_seed=seed)
    wall_s = time.perf_counter() - start
    task = task_cfg["task"]
    logged = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    samples = [{"id": s["doc"]["id"], "prompt": s["doc"]["prompt"], **s[module.METRIC]}
               for s in logged]
    settings = {**module.DEFAULTS, **cfg, "generation": generation, "task": task,
                "lm_eval_version": version("lm-eval"), "items_sha256": manifest.get("items_sha256"),
                "origin": manifest.get("origin")}
    records = [s[module.METRIC] for s in logged]
    task_results = out["results"][task]
    result = {"benchmark": name, "metric": _metric_name(module, cfg),
              "score": task_results[_result_key(task_results, module.METRIC)],
              "n_items": len(samples), "settings": settings, "wall_s": round(wall_s, 3),
              "wall_s_per_item": round(wall_s / max(1, len(samples)), 3)}
    if hasattr(module, "breakdown"):
        result["breakdown"] = module.breakdown(records)
    if isinstance(manifest["fewshot"], dict) and manifest["fewshot"].get("unavailable"):
        result["not_evaluated"] = manifest["fewshot"]["unavailable"]
    return {**result, "samples": samples}


def set_batch_size(lm, batch_size) -> None:
    """A number, or lm-eval's "auto" / "auto:N" (the largest batch that fits, found by trying),
    set per benchmark on the one HFLM the suite shares."""
    if str(batch_size).startswith("auto"):
        _, _, times = str(batch_size).partition(":")
        lm.batch_size_per_gpu, lm.batch_schedule = "auto", float(times or 1)
        lm.batch_sizes = {}  # what an earlier benchmark detected does not hold for this one
    else:
        lm.batch_size_per_gpu = int(batch_size)


def _result_key(task_results: dict, metric: str) -> str:
    """lm-eval names results "<metric>,<filter>"; our tasks have one filter each."""
    (key,) = [k for k in task_results if k.split(",")[0] == metric and "stderr" not in k]
    return key


def run_suite(model, tokenizer, benchmarks: dict[str, dict], data: dict[str, Path],
              out_dir: Path) -> dict[str, dict]:
    """Evaluate `model` on each benchmark in `benchmarks` (name -> cfg) using `data` (name -> file
    written by `prepare_benchmark`); write `out_dir/<name>.json` and return name -> that dict.
    A name "<bench>_bpb" scores the reference answers' likelihood (evals.answer_likelihood)
    with <bench>'s cfg instead of its accuracy."""
    from lm_eval.tasks import TaskManager

    from evals.hflm import ReferenceDecodeHFLM

    missing = [n for n in benchmarks if n not in data]
    if missing:
        raise ValueError(f"run_suite: no prepared data for {missing}")
    out_dir = Path(out_dir)
    lm = ReferenceDecodeHFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    task_manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    results = {}
    with tempfile.TemporaryDirectory(prefix="spiel-evals-") as tmp:
        for name, cfg in benchmarks.items():
            cfg = cfg or {}
            set_batch_size(lm, cfg.get("batch_size", 1))
            if is_answer_likelihood(name):
                result = answer_likelihood(lm, name, cfg, Path(data[name]))
            else:
                result = _evaluate_one(lm, task_manager, name, cfg, Path(data[name]), Path(tmp))
            write_json(out_dir / f"{name}.json", result)
            results[name] = result
    return results
