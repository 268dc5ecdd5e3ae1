"""Snakemake adapter: one training run of the method in the run folder's method.json
(finetune.train.train_from_file: in this process, or under torchrun on resources.train.gpu GPUs)."""
from study.hub import hub_offline

hub_offline()  # before transformers is imported: downloads happened in download_model

import sys
from pathlib import Path

import torch

from finetune.train import train_from_file
from study.rule_log import record_failures, to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
# The rule's `threads`: Snakemake exports OMP_NUM_THREADS to shell jobs only, and torch would
# otherwise take every core, so two jobs side by side would fight over them.
torch.set_num_threads(sm.threads)
out = Path(sm.output[0])
record_failures(out, lambda: train_from_file(sm.params.model, Path(sm.input.data), sm.params.train_cfg,
                                             out.parent, int(sm.wildcards.seed), int(sm.resources.gpu),
                                             stdout=sys.stdout, donors=[Path(d) for d in sm.params.donors]))
