"""Snakemake adapter: download one hub model into the hub cache once (study.hub)."""
from study.hub import download_model
from study.rule_log import to_rule_log

sm = snakemake  # noqa: F821
to_rule_log(sm.log[0])
print(download_model(sm.params.repo_id, sm.output[0], sm.params.mirror))
