"""The cluster path against a real Slurm: workflow/cluster/local-slurm.sh starts a single-node
cluster (slurmctld, slurmd, slurmdbd, MariaDB, munge) on this machine and Snakemake submits
through snakemake-executor-plugin-slurm with profiles/local-slurm.

Needs root on Linux with apt-get (the script installs Slurm when it is missing). Set
SPIEL_SKIP_SLURM=1 to skip. The project's smoke slice on the cluster, compared with a local run
(3.5 min more on a quiet 2-core machine), runs only with SPIEL_SLURM_SMOKE=1."""
import csv
import fcntl
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "workflow" / "cluster" / "local-slurm.sh"
PROFILE = ROOT / "profiles" / "local-slurm"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _skip_reason():
    if os.environ.get("SPIEL_SKIP_SLURM") == "1":
        return "SPIEL_SKIP_SLURM=1"
    if not sys.platform.startswith("linux"):
        return "a local Slurm cluster needs Linux"
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root (it installs packages and writes /etc/slurm)"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "no apt-get to install Slurm with"
    return None


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def _script(command, timeout=600):
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def cluster():
    """A running cluster for the session; stopped afterwards unless it was already up. Another
    test session on this machine waits for this one (one cluster per machine)."""
    lock = open(os.environ.get("LOCAL_SLURM_DIR", "/tmp/local-slurm") + ".tests.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    already_up = _script("status").returncode == 0
    start = time.time()
    proc = _script("up")
    if proc.returncode != 0:
        _script("down")
        lock.close()
        pytest.fail(f"local-slurm.sh up failed:\n{proc.stdout}\n{proc.stderr}")
    print(f"local-slurm up: {time.time() - start:.1f} s")
    try:
        yield
    finally:
        try:
            if not already_up:
                down = _script("down")
                assert down.returncode == 0, down.stderr
        finally:
            lock.close()


def snakemake_on_slurm(args, cwd, limit_s):
    """Snakemake under `timeout -s INT`: SIGINT makes it cancel its Slurm jobs."""
    start = time.time()
    proc = subprocess.run(["timeout", "-s", "INT", "-k", "60", str(limit_s), *SNAKEMAKE, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=limit_s + 120)
    return proc, time.time() - start


def sacct(run_id):
    """This run's Slurm jobs from accounting: [{JobID, State, Partition, ReqMem, Comment, ...}]."""
    fields = "JobID,JobName,State,ExitCode,Partition,Account,ReqMem,AllocTRES,Comment"
    out = subprocess.run(["sacct", "-X", "-P", "-n", "--starttime", "now-1days", "--name", run_id,
                          "-o", fields], capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields.split(","), line.split("|"))) for line in out.splitlines() if line]


def run_id_of(output):
    for line in output.splitlines():
        if "SLURM run ID:" in line:
            return line.split("SLURM run ID:")[1].strip()
    raise AssertionError("no 'SLURM run ID' in Snakemake's output:\n" + output[-3000:])


TINY = '''
rule all:
    input: "b.txt", "flaky.txt"

rule a:
    output: "a.txt"
    shell: "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell:
        "cat {input} > {output}; "
        "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION gpus=${{CUDA_VISIBLE_DEVICES:-none}} >> {output}"

# Fails on its first attempt, succeeds on the second, asking for more memory each time.
rule flaky:
    output: "flaky.txt"
    shell:
        """
        if [ ! -e flaky.marker ]; then touch flaky.marker; echo "failing on purpose" >&2; exit 1; fi
        echo job=$SLURM_JOB_ID mem_mb={resources.mem_mb} > {output}
        """
'''


def test_two_rules_and_a_retry_go_through_sbatch(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TINY)
    # Targets first; --set-resources takes a list. b asks for the gpu partition and its one
    # (pretend) GPU; flaky's memory grows with the attempt, as profiles/slurm's defaults do.
    proc, wall = snakemake_on_slurm(
        ["all", "--workflow-profile", str(PROFILE), "--retries", "1",
         "--set-resources", "b:slurm_partition=gpu", "b:gpu=1", "flaky:mem_mb=100*attempt"],
        cwd=tmp_path, limit_s=400)
    print(f"tiny workflow on slurm (2 rules + 1 retried): {wall:.0f} s")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]

    a, b = (tmp_path / "a.txt").read_text(), (tmp_path / "b.txt").read_text()
    assert a.startswith("job=") and "partition=main" in a
    b_lines = b.splitlines()
    assert b_lines[0] == a.strip() and "partition=gpu gpus=0" in b_lines[1]
    assert b_lines[0].split()[0] != b_lines[1].split()[0]  # two Slurm jobs
    assert "mem_mb=200" in (tmp_path / "flaky.txt").read_text()  # the second attempt's request

    # Every job went through sbatch: the plugin's logs, and Slurm's accounting of this run.
    logs = tmp_path / ".snakemake" / "slurm_logs"
    assert {p.name for p in logs.iterdir()} >= {"rule_a", "rule_b", "rule_flaky"}
    assert len(list((logs / "rule_flaky").glob("*.log"))) == 2  # the failed one and the retry
    jobs = sacct(run_id_of(output))
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job["Comment"], []).append(job)
    assert sorted(by_rule) == ["rule_a", "rule_b", "rule_flaky"], jobs
    assert [j["State"] for j in by_rule["rule_flaky"]] == ["FAILED", "COMPLETED"], jobs
    assert [j["ReqMem"] for j in by_rule["rule_flaky"]] == ["100M", "200M"], jobs
    assert by_rule["rule_b"][0]["Partition"] == "gpu" and "gres/gpu=1" in by_rule["rule_b"][0]["AllocTRES"]
    assert by_rule["rule_a"][0]["Partition"] == "main"
    assert {j["Account"] for j in jobs} == {"spiel"}


def _cells(path):
    with open(path, newline="") as f:
        return {(row["model"], row["method"]): row for row in csv.DictReader(f)}


def _same_cell(x, y):
    if x == y:
        return True
    try:
        return math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9)
    except ValueError:
        return False


@pytest.mark.skipif(os.environ.get("SPIEL_SLURM_SMOKE") != "1",
                    reason="runs the smoke slice twice, locally and on Slurm (minutes): set SPIEL_SLURM_SMOKE=1")
def test_smoke_slice_on_slurm_matches_a_local_run(cluster, tmp_path):
    """The project's smoke slice through the cluster gives Table 1's cells of a local run.
    SPIEL_SMOKE_REFERENCE=path/to/table1.csv (a local smoke run's) saves the local run."""
    cache = os.environ.get("SFT_CACHE", str(ROOT / ".cache"))
    reference = os.environ.get("SPIEL_SMOKE_REFERENCE")
    if not reference:
        local = tmp_path / "local"
        start = time.time()
        proc = subprocess.run(
            [*SNAKEMAKE, f"{local}/table1.csv", "--cores", "2", "--configfile=config/smoke.yaml",
             "--config", f"results_dir={local}", f"cache_dir={cache}"],
            cwd=ROOT, capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        print(f"smoke slice locally: {time.time() - start:.0f} s")
        reference = local / "table1.csv"

    results = tmp_path / "slurm"
    proc, wall = snakemake_on_slurm(
        [f"{results}/table1.csv", "--workflow-profile", str(PROFILE),
         "--configfile=config/smoke.yaml", "--config", f"results_dir={results}", f"cache_dir={cache}"],
        cwd=ROOT, limit_s=1500)
    print(f"smoke slice on slurm: {wall:.0f} s")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]

    ours, theirs = _cells(results / "table1.csv"), _cells(reference)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].keys() == theirs[key].keys()
        for column in ours[key]:
            assert _same_cell(ours[key][column], theirs[key][column]), (key, column, ours[key], theirs[key])

    jobs = sacct(run_id_of(output))
    assert jobs and all(j["State"] == "COMPLETED" for j in jobs), jobs
    for job in jobs:
        rule = job["Comment"].split("_wildcards_")[0]
        on_gpu = rule in ("rule_train", "rule_evaluate")
        assert job["Partition"] == ("gpu" if on_gpu else "main"), job
        assert ("gres/gpu=1" in job["AllocTRES"]) == on_gpu, job
