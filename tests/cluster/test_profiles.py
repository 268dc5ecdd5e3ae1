"""The cluster profiles route jobs (dry runs: no cluster needed): only training, evaluation and
Table 3's measurements ask for the GPU partition; requests grow with the attempt."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU_RULES = {"train", "evaluate", "profile_measure"}


def job_resources(*args):
    """{rule: [resources dict of each job]} from a dry run's job listing."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs, rule = {}, None
    for line in proc.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            pairs = (item.split("=", 1) for item in line.split("resources:", 1)[1].split(", "))
            jobs.setdefault(rule, []).append({k.strip(): v for k, v in pairs})
            rule = None
    return jobs


@pytest.mark.parametrize("profile, config, gpu_partition, cpu_partition", [
    ("slurm", "config/paper.yaml", "gpu", None),
    ("local-slurm", "config/smoke.yaml", "gpu", "main"),
])
def test_only_gpu_rules_go_to_the_gpu_partition(profile, config, gpu_partition, cpu_partition):
    # No target: the whole study, so that every rule appears.
    jobs = job_resources("--workflow-profile", f"profiles/{profile}", f"--configfile={config}")
    assert GPU_RULES <= set(jobs)
    for rule, resources in jobs.items():
        if rule == "all":
            continue
        for res in resources:
            if rule in GPU_RULES:
                assert res.get("slurm_partition") == gpu_partition, (rule, res)
                assert int(res.get("gpu", 0)) >= 1, (rule, res)
            else:
                assert res.get("slurm_partition") == cpu_partition, (rule, res)
                assert int(res.get("gpu", 0)) == 0, (rule, res)


def test_local_profile_fits_a_small_node():
    """The local cluster's node may be a 2-core, few-GB machine: every request fits in 4 GB."""
    jobs = job_resources("--workflow-profile", "profiles/local-slurm", "--configfile=config/smoke.yaml")
    for rule, resources in jobs.items():
        for res in resources:
            assert int(res["mem_mb"]) <= 4000, (rule, res)
