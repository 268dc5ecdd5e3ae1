"""Snakemake adapter: one training run through the shared loop (finetune.train.train): in this
process on one device, or under torchrun on `resources.train.gpu` GPUs when that is above 1."""
import sys
from pathlib import Path

from _log import record_failures, to_rule_log
from baselines import resolve_method
from finetune.train import check_data_parallel, cli_argv, train, train_data_parallel

sm = snakemake  # noqa: F821
to_rule_log(sm)
out = Path(sm.output[0])
gpus = int(sm.resources.gpu)
method = resolve_method(sm.wildcards.method, sm.params.overrides, sm.params.model_size)
seed = int(sm.wildcards.seed)
if gpus <= 1:
    record_failures(out, lambda: train(sm.params.model, Path(sm.input.data), method,
                                       sm.params.train_cfg, out.parent, seed))
else:
    check_data_parallel(method, sm.params.train_cfg, gpus)  # a config error fails the job itself
    argv = cli_argv(sm.params.model, Path(sm.input.data), sm.wildcards.method, sm.params.overrides,
                    sm.params.model_size, sm.params.train_cfg, out.parent, seed)
    record_failures(out, lambda: train_data_parallel(gpus, argv, stdout=sys.stdout))
