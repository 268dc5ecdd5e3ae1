"""Snakemake adapter: write the run's resolved method into its folder (study.plan resolves it
from the method file, the config's overrides, the hyperparameter tag and, for a table run the
grid covers, Table 4's winner: this job's one input, where it has one)."""
from artifacts.atomic import write_json
from artifacts.layout import Run
from study.plan import Plan
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
method = Plan(sm.config).resolved_method(Run.from_dir(sm.output[0]), sm.input[0] if sm.input else None)
write_json(sm.output[0], method, indent=2, sort_keys=True)
