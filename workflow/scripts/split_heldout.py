"""Snakemake adapter: split a prepared mixture into train and held-out files."""
from pathlib import Path

from finetune.heldout import split_heldout
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
n_train, n_heldout = split_heldout(Path(sm.input[0]), Path(sm.output.train),
                                   Path(sm.output.heldout), sm.params.n, sm.params.seed)
print(f"{n_train} training rows, {n_heldout} held-out rows")
