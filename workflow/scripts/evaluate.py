"""Snakemake adapter: evaluate one artifact on its benchmarks (evals.run_suite) and on the
held-out slices of its mixtures (finetune.heldout), then write the run's index.json."""
import json
from pathlib import Path

from _log import record_failures, to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm)
out = Path(sm.output[0])


def evaluate():
    from baselines import load_for_eval
    from evals import run_suite
    from evals.io import write_json
    from finetune.heldout import heldout_loss

    run_dir = None
    if "run" in sm.input.keys():
        summary = json.loads(Path(sm.input.run).read_text())
        if summary.get("status") == "failed":
            raise RuntimeError(f"training failed: {summary['error']}")
        run_dir, method = Path(sm.input.run).parent, summary["method"]
    else:  # the untuned model, in 4 bits for Table 2's "Original (4-bit)"
        method = {"quantize": "nf4"} if sm.wildcards.method == "original-4bit" else None
    model, tokenizer = load_for_eval(sm.params.model, run_dir, method)

    data = {Path(p).stem: Path(p) for p in sm.input.data}
    index = {name: f"{name}.json" for name in run_suite(model, tokenizer, sm.params.benches, data, out.parent)}
    for path in map(Path, sm.input.heldout):
        role = path.name.split(".")[0]
        result = heldout_loss(model, tokenizer, path, sm.params.heldout["max_length"],
                              sm.params.heldout["batch_size"])
        write_json(out.parent / f"heldout_loss-{role}.json", result)
        index[f"heldout_loss:{role}"] = f"heldout_loss-{role}.json"
    write_json(out, {"status": "ok", "benchmarks": index})


record_failures(out, evaluate)
