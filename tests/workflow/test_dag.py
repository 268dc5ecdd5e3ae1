"""The DAG: config validation names the bad key, and every scale dry-runs."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def dry_run(*args, cwd=ROOT):
    return subprocess.run([*SNAKEMAKE, "-n", "--quiet=rules", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def job_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_embedded_default_dry_run():
    proc = dry_run("results/table1.csv")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["train"] >= 1 and counts["evaluate"] >= counts["train"]
    assert counts["method_table"] == 1


def test_three_seeds_file_trains_every_cell_and_grid_point_three_times():
    one = job_counts(dry_run("results/table1.csv").stdout)
    proc = dry_run("--configfile=config/three-seeds.yaml", "results/table1.csv")
    assert proc.returncode == 0, proc.stderr
    assert job_counts(proc.stdout)["train"] == 3 * one["train"]


def dry_run_jobs(*args) -> dict[str, list[dict]]:
    """Each job of a (non-quiet) dry run, by rule: its fields (input, output, wildcards, ...)."""
    proc = subprocess.run([*SNAKEMAKE, "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule )", proc.stdout)[1:]:
        rule = block.split(":")[0].split(" ", 1)[1]
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:]
                      if ": " in line and line.startswith("    "))
        jobs.setdefault(rule, []).append(fields)
    return jobs


def test_table_runs_the_grid_covers_wait_for_table4_and_grid_points_do_not():
    """Table 1's LoRA, SFT-AG and SFT-MA train with Table 4's winner: resolving their method reads
    results/table4.csv, which the grid writes from its own points, which never read it."""
    jobs = dry_run_jobs("results/table1.csv")
    assert len(jobs["grid"]) == 1 and jobs["grid"][0]["output"].startswith("results/table4.csv")
    reads_table4 = {}
    for job in jobs["resolve_method"]:
        wildcards = dict(item.split("=", 1) for item in job["wildcards"].split(", "))
        reads_table4[wildcards["method"], wildcards["mixture"], wildcards["hp"]] = \
            job.get("input") == "results/table4.csv"
    for method in ("lora", "sft-ag", "sft-ma"):
        for role in ("flan", "single", "mix"):
            assert reads_table4[method, role, "default"], (method, role)
        points = [key for key in reads_table4 if key[0] == method and key[2] != "default"]
        assert len(points) == 2 and not any(reads_table4[key] for key in points), method
    for method in ("full", "ia3", "sift", "original"):  # not searched: the method file's defaults
        assert not any(read for key, read in reads_table4.items() if key[0] == method), method


def test_apply_winners_false_keeps_table1_off_the_grid(tmp_path):
    off = tmp_path / "off.yaml"
    off.write_text("study:\n  grid:\n    apply_winners: false\n")
    jobs = dry_run_jobs(f"--configfile={off}", "results/table1.csv")
    assert "grid" not in jobs and not any("input" in job for job in jobs["resolve_method"])


def test_smoke_dry_run_is_one_lora_cell():
    proc = dry_run("--configfile=config/smoke.yaml", "results/table1.csv")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["train"] == 1 and counts["evaluate"] == 1
    assert counts["prepare_benchmark"] == 1  # GSM only
    assert counts["prepare_benchmark_bpb"] == 1  # GSM's answer likelihood, on its own 8 items


def test_no_target_is_the_whole_study_so_the_report_covers_every_output():
    proc = dry_run("--configfile=config/smoke.yaml")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["method_table"] == 2  # Tables 1 and 2
    assert counts["grid"] == counts["figure4"] == counts["figure3"] == counts["table3"] == counts["all"] == 1
    assert counts["profile_measure"] == 3  # LoRA, SFT-AG and the frozen floor


@pytest.mark.parametrize("text, key", [
    ("study:\n  tabel1: {}\n", "tabel1"),
    ("evals:\n  gsm: {source: packged}\n", "packged"),
    ("resources:\n  train: {threads: 0, mem_mb: 100, runtime: 1}\n", "threads"),
    ("study:\n  models: [no-such-model]\n", "study.models[0]"),
    ("models:\n  ..: {size: 135m, gguf: [{requirement: a==1, member: m}], sha256: '" + "0" * 64 + "'}\n",
     "'..' does not match"),
    ("mixtures:\n  ../up: {source: flan-packaged}\n", "'../up' does not match"),
])
def test_bad_config_fails_before_any_job_and_names_the_key(tmp_path, text, key):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    proc = dry_run(f"--configfile={bad}", "results/table1.csv")
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


def test_bad_method_values_fail_the_dry_run_and_name_the_config_key(tmp_path):
    """Override and grid values are checked against the method schema when the DAG is built,
    not by the training job after model and data preparation."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("method_overrides:\n  lora: {r: sixteen, lr: -1, lora_dropout: 1.5}\n"
                   "  sft-ag: {initial_reselection_rate: 1.5}\n"
                   "study:\n  grid:\n    searches:\n      - {method: lora, lr: [0.001, -1]}\n")
    proc = dry_run(f"--configfile={bad}", "results/table1.csv")
    assert proc.returncode != 0
    for key in ("method_overrides.lora.r", "method_overrides.lora.lr", "method_overrides.lora.lora_dropout",
                "method_overrides.sft-ag.initial_reselection_rate", "study.grid.searches[0].lr"):
        assert key in proc.stdout + proc.stderr, key


def test_a_bad_method_file_fails_the_dry_run_and_names_file_and_key(tmp_path):
    """An unknown peft config class and a misspelled keyword are found at parse time (the peft
    config is instantiated), naming the method file."""
    methods = tmp_path / "methods"
    shutil.copytree(ROOT / "config" / "methods", methods)
    lora = ("builder: peft\npeft_config: {cls}\ndefaults:\n  lr: 2.0e-4\n  r: 4\n"
            "  {alpha}: 8\n  target_modules: all-linear\n")
    (methods / "lora-cls.yaml").write_text(lora.format(cls="LoraConfg", alpha="lora_alpha"))
    (methods / "lora-kw.yaml").write_text(lora.format(cls="LoraConfig", alpha="lora_alhpa"))
    every_method = tmp_path / "every-method.yaml"
    every_method.write_text('study:\n  table1:\n    methods: [lora, "*"]\n')
    proc = subprocess.run([*SNAKEMAKE, "-n", f"--configfile={every_method}", "results/table1.csv"],
                          cwd=ROOT, env={**os.environ, "SFT_METHODS_DIR": str(methods)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).splitlines()
    for name, key in [("lora-cls", "peft_config 'LoraConfg'"), ("lora-kw", "'lora_alhpa'")]:
        assert any(str(methods / f"{name}.yaml") in line and key in line for line in lines), (name, lines)


def test_paper_config_dry_runs_on_slurm_profile():
    """The paper's study goes to slurm through the executor plugin (dry run: no cluster needed)."""
    proc = dry_run("--workflow-profile", "slurm", "--configfile=config/paper.yaml",
                   "results/table1.csv")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = job_counts(proc.stdout)
    # 2 sizes x 5 tuned methods x 3 mixtures, less FullFT's Tulu v2 cells (the released models
    # are evaluated) and 13b FullFT on Flan v2 / GPT4-Alpaca (not run in the paper), and the 7b
    # grid that Table 1 waits for (Appendix A: LoRA, SFT-AG, SFT-MA lr x r, SpIEL's weight decay,
    # (IA)3's lr)
    assert counts["train"] == (2 * 5 * 3 - 2 - 2) + (3 * 4 * 4 + 2 * 5 + 4)
    assert counts["grid"] == 1
    assert counts["download_model"] == 4  # Llama-2 7b/13b and Tulu 2 7b/13b, once each
    assert "prepare_model" not in counts  # hub ids pass straight through


def test_paper_jobs_ask_for_what_their_method_and_size_need():
    """7b FullFT is not a LoRA job (resources.per_method), and only GPU rules ask for a GPU."""
    jobs = dry_run_jobs("--workflow-profile", "slurm", "--configfile=config/paper.yaml", "results/table1.csv")
    train = {j["wildcards"]: j["resources"] for j in jobs["train"]}
    full = train["model=llama2-7b, mixture=flan, method=full, hp=default, seed=0"]
    lora = train["model=llama2-7b, mixture=flan, method=lora, hp=default, seed=0"]
    assert "mem_mb=160000" in full and "runtime=4320" in full and "gpu=1" in full
    assert "mem_mb=64000" in lora and "runtime=2880" in lora
    assert all("slurm_partition=gpu" in j["resources"] for j in jobs["train"] + jobs["evaluate"])
    assert not any("gpu=" in j["resources"] or "slurm_partition=gpu" in j["resources"]
                   for rule in ("download_model", "build_mixture", "prepare_benchmark", "method_table")
                   for j in jobs[rule])  # (local rules there: tests/cluster checks it in sacct)


def test_a_baseline_added_as_one_yaml_file_joins_the_tables(tmp_path):
    """One YAML under the methods directory (here a copy, via SFT_METHODS_DIR) and a study whose
    table lists "*" trains, evaluates and tabulates it, with no other change."""
    methods = tmp_path / "methods"
    shutil.copytree(ROOT / "config" / "methods", methods)
    (methods / "lora-r4.yaml").write_text(
        "builder: peft\npeft_config: LoraConfig\ndefaults:\n  lr: 2.0e-4\n  weight_decay: 0.0\n"
        "  r: 4\n  lora_alpha: 8\n  lora_dropout: 0.0\n  target_modules: all-linear\n")
    every_method = tmp_path / "every-method.yaml"
    every_method.write_text('study:\n  table1:\n    methods: [original, lora, "*"]\n')
    env = {**os.environ, "SFT_METHODS_DIR": str(methods)}
    proc = subprocess.run([*SNAKEMAKE, "-n", f"--configfile={every_method}", "results/table1.csv"],
                          cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    trained = {line.split("method=")[1].split(",")[0] for line in proc.stdout.splitlines()
               if "wildcards:" in line and "method=" in line}
    assert "lora-r4" in trained and "lora" in trained
