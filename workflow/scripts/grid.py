"""Snakemake adapter: Table 4 and Figure 4 from the grid runs' evaluation files."""
import json
from pathlib import Path

import pandas as pd

from _log import to_rule_log
from analysis import figures
from analysis.results import read_cell, result_key

sm = snakemake  # noqa: F821
to_rule_log(sm)
score = sm.params.score
rows = []
for index in map(Path, sm.input):
    # .../evals/<model>/<mixture>/<method>/<hp>/seed<N>/index.json; the run dir mirrors it.
    seed_dir = index.parent
    model, _, method, _ = seed_dir.parts[-5:-1]
    summary = Path(str(seed_dir).replace("/evals/", "/runs/", 1)) / "train_summary.json"
    resolved = json.loads(summary.read_text()).get("method", {}) if summary.exists() else {}
    cell = read_cell(index, result_key(sm.config["study"]["grid"]["mixture"], score))
    rows.append({"model": model, "method": method, "lr": resolved.get("lr"),
                 "r": resolved.get("r"), "weight_decay": resolved.get("weight_decay", 0.0),
                 "score": cell.value, "note": cell.reason})
grid = pd.DataFrame(rows)
best = figures.best_settings(grid, lower_is_better=score == "heldout_loss")
best.to_csv(sm.output.table + ".tmp", index=False)
Path(sm.output.table + ".tmp").replace(sm.output.table)
figures.figure4(grid, score, Path(sm.output.figure))
