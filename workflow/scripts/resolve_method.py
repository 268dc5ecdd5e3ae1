"""Snakemake adapter: write the run's resolved method (study.plan resolved it from the method
file, the config's overrides and the hyperparameter tag) into the run folder."""
from artifacts.atomic import write_json
from study.rule_log import to_rule_log

to_rule_log(snakemake.log[0])  # noqa: F821
write_json(snakemake.output[0], snakemake.params.method, indent=2, sort_keys=True)  # noqa: F821
