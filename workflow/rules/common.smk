# What this config plans (study.plan) and where each file lives (artifacts.layout). Data flows
# one way: config -> prepared model and data -> runs/<run>/ (resolve, train) -> evals/<run>/
# -> tables and figures. The rules only name files; the plan decides which.
from artifacts.layout import Layout, Run
from study.plan import BENCHMARKS, ROLES, Plan

PLAN = Plan(config)
PLAN.check_references()  # before any job starts
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


def rule_resources(name):
    """Per-rule threads/memory/runtime/gpu from config, so local and slurm runs share one DAG."""
    return config["resources"][name]


def run_of(wildcards):
    return Run(wildcards.model, wildcards.mixture, wildcards.method, wildcards.hp, int(wildcards.seed))
