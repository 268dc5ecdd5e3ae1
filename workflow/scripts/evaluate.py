"""Snakemake adapter: evaluate one artifact on its benchmarks (evals.run_suite)."""
import json
import os
from pathlib import Path

from _log import record_failures, to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm)
out = Path(sm.output[0])


def evaluate():
    run_dir = None
    if "run" in sm.input.keys():
        summary = json.loads(Path(sm.input.run).read_text())
        if summary.get("status") == "failed":
            raise RuntimeError(f"training failed: {summary['error']}")
        run_dir = Path(sm.input.run).parent

    from baselines import load_for_eval
    from evals import run_suite

    method = None
    if run_dir is not None:
        method = json.loads((run_dir / "train_summary.json").read_text())["method"]
    model, tokenizer = load_for_eval(sm.params.model, run_dir, method)
    data = {Path(p).stem: Path(p) for p in sm.input.data}
    results = run_suite(model, tokenizer, sm.params.benches, data, out.parent)
    index = {"status": "ok", "benchmarks": {name: f"{name}.json" for name in results}}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, out)


record_failures(out, evaluate)
