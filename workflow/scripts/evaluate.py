"""Snakemake adapter: evaluate one run (study.evaluate.evaluate_run) and write its index.json."""
from study.hub import hub_offline

hub_offline()  # before transformers is imported: downloads happened in download_model

import json
from pathlib import Path

import torch

from study.evaluate import evaluate_run
from study.rule_log import record_failures, to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
# The rule's `threads`: Snakemake exports OMP_NUM_THREADS to shell jobs only, and torch would
# otherwise take every core, so two jobs side by side would fight over them.
torch.set_num_threads(sm.threads)
run_dir = Path(sm.input.run).parent if "run" in sm.input.keys() else None
record_failures(sm.output[0], lambda: evaluate_run(
    sm.params.model, json.loads(Path(sm.input.method).read_text()), run_dir, sm.params.benches,
    sm.params.data, list(sm.input.heldout), sm.params.heldout, Path(sm.output[0])))
