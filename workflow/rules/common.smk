# What this config plans (study.plan) and where each file lives (artifacts.layout). Data flows
# one way: config -> prepared model and data -> runs/<run>/ (resolve, train) -> evals/<run>/
# -> tables and figures. The rules only name files; the plan decides which.
from artifacts.layout import Layout, Run
from study.checks import check_references
from study.plan import BENCHMARKS, ROLES, Plan

PLAN = Plan(config)
# Before any job starts. The builders' own checks (peft config classes, SftConfig) import torch
# and peft: the planning process runs them, not each cluster job that parses this file again.
check_references(PLAN, builders=workflow.is_main_process)
LAYOUT = PLAN.layout
CACHE = config["cache_dir"]
RESULTS = config["results_dir"]
RUN = Run.pattern()

wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9._-]*",
    mixture="|".join(ROLES + ["none"]),
    method="[A-Za-z0-9][A-Za-z0-9._-]*",
    bench="|".join(BENCHMARKS),
    seed=r"\d+",
    repo=r"[A-Za-z0-9][A-Za-z0-9._-]*--[A-Za-z0-9][A-Za-z0-9._-]*",


def job_resources(rule, key, grows=False):
    """A resource of a train/evaluate job from the config (study.plan.Plan.job_resources: per
    method and model size where `resources.per_method` says so); memory and runtime grow with
    Snakemake's attempt, so that a retried job (--retries) gets more."""
    if grows:
        return lambda w, attempt: PLAN.job_resources(rule, w.model, w.method)[key] * attempt
    return lambda w: PLAN.job_resources(rule, w.model, w.method).get(key, 0)


def run_of(wildcards):
    return Run(wildcards.model, wildcards.mixture, wildcards.method, wildcards.hp, int(wildcards.seed))
