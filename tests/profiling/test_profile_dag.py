"""The Table 3 rules: one measuring job per (method or floor, checkpointing), all `heavy`."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_table3_dry_run_plans_every_method_and_floor_with_and_without_checkpointing():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--quiet", "rules", "--",
                           "results/table3.csv"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    counts = {p[0]: int(p[1]) for p in (line.split() for line in proc.stdout.splitlines())
              if len(p) == 2 and p[1].isdigit()}
    # 3 methods + the frozen floor, each with and without checkpointing (embedded default)
    assert counts["profile_measure"] == 8
    assert counts["table3"] == 1
    rules = (ROOT / "workflow/rules/profile.smk").read_text()
    assert "heavy=2" in rules and "benchmark:" in rules and "log:" in rules
