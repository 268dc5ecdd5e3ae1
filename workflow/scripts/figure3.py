"""Snakemake adapter: Figure 3 from the saved sparse deltas' `grown_at` tensors."""
import json
from pathlib import Path

from _log import to_rule_log
from analysis import figures
from analysis.tables import METHOD_LABELS

sm = snakemake  # noqa: F821
to_rule_log(sm)
runs = {}
for summary_path in map(Path, sm.input):
    summary = json.loads(summary_path.read_text())
    if summary.get("status") != "ok":
        print(f"skipping failed run {summary_path.parent}: {summary.get('error')}")
        continue
    grown_at = figures.grown_at_of(summary_path.parent / "artifact" / "sft_model.safetensors")
    model, role, method = summary_path.parts[-6:-3]
    label = f"{METHOD_LABELS.get(method, method)}, {model}, {role}"
    runs[label] = (grown_at, int(grown_at.max()))
figures.figure3(runs, Path(sm.output[0]))
