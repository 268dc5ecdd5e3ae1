"""Evaluate one run: its model on its benchmarks (evals) and on the held-out slices of its
mixtures (finetune.heldout), then the index.json that the tables read."""
from __future__ import annotations

import json
from pathlib import Path

from artifacts.atomic import write_json
from artifacts.layout import RunFolder


def evaluate_run(model_path: str, method: dict, run_dir: Path | None, benches: dict[str, dict],
                 data: dict[str, Path], heldout: list[Path], heldout_cfg: dict, index_path: Path) -> None:
    """`run_dir` is the training run (None for an untuned method); a failed training is an error
    here, so that the evaluation's own failure record names it. `benches` and `data` map each
    evaluation (a benchmark, or "<bench>_bpb" for its answer likelihood) to its config and its
    prepared items (study.plan.Plan.eval_settings / eval_data)."""
    from baselines.eval_model import load_for_eval
    from evals import run_suite
    from finetune.heldout import heldout_loss

    if run_dir is not None:
        summary = json.loads(RunFolder(Path(run_dir)).summary.read_text())
        if summary.get("status") == "failed":
            raise RuntimeError(f"training failed: {summary['error']}")
    model, tokenizer = load_for_eval(model_path, run_dir, method)
    out_dir = Path(index_path).parent
    files = {name: Path(path) for name, path in data.items()}
    index = {name: f"{name}.json" for name in run_suite(model, tokenizer, benches, files, out_dir)}
    for path in map(Path, heldout):
        role = path.name.split(".")[0]
        result = heldout_loss(model, tokenizer, path, heldout_cfg["max_length"], heldout_cfg["batch_size"])
        write_json(out_dir / f"heldout_loss-{role}.json", result)
        index[f"heldout_loss:{role}"] = f"heldout_loss-{role}.json"
    write_json(index_path, {"status": "ok", "benchmarks": index})
