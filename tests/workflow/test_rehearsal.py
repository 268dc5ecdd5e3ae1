"""The paper profile's rehearsal, end to end in CI: config/paper.yaml's study on the tiny
offline stand-ins (config/rehearsal.yaml), Tables 1-4, Figures 3 and 4 and the comparisons with
the paper. Every cell is a measurement or empty for a stated reason."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.tables import DERIVED_SUFFIXES

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["table1.csv", "table2.csv", "table3.csv", "table4.csv", "figure3.png", "figure4.png",
           "table1_vs_paper.md", "table2_vs_paper.md", "table3_vs_paper.md"]


@pytest.mark.slow
def test_the_paper_profile_rehearses_offline(tmp_path):
    results, mirror = tmp_path / "results", tmp_path / "hub"
    cache = os.environ.get("SFT_CACHE", str(ROOT / ".cache"))
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *[f"{results}/{t}" for t in TARGETS], "--cores", "2",
         "--configfile", "config/paper.yaml", "config/rehearsal.yaml",
         "--config", f"results_dir={results}", f"cache_dir={cache}", f"hub_mirror={mirror}"],
        cwd=ROOT, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    print(f"rehearsal wall time: {time.time() - start:.0f} s")

    for name in ("table1", "table2"):
        table = pd.read_csv(results / f"{name}.csv")
        cells = table[[c for c in table.columns if "/" in c and not c.endswith(DERIVED_SUFFIXES)]]
        assert cells.notna().to_numpy().any(), table.to_string()
        measured = cells.notna().to_numpy()  # and every measured cell has its interval
        assert table[[c + "_low" for c in cells.columns]].notna().to_numpy()[measured].all()
        for _, row in table.iterrows():  # an empty cell's column is named in the row's notes
            for column in cells.columns[row[cells.columns].isna()]:
                assert column in str(row["notes"]) or "(all)" in str(row["notes"]), (name, row.to_dict())
        versus = pd.read_csv(results / f"{name}_vs_reference.csv")  # written beside the table
        assert (versus["difference"].notna() | versus["note"].notna()).all(), versus.to_string()
        assert name == "table2" or versus["difference"].notna().any(), versus.to_string()
    table1 = pd.read_csv(results / "table1.csv").set_index(["model", "method_id"])
    assert "not run in the paper" in table1.loc[("llama2-13b", "full"), "notes"]
    assert pd.notna(table1.loc[("llama2-7b", "full"), "mix/mmlu"])  # the released model, evaluated
    assert pd.notna(table1.loc[("llama2-7b", "full"), "flan/mmlu"])  # 7b FullFT, trained
    assert table1.loc[("llama2-7b", "lora"), "setting"].endswith("(grid)")  # Table 4's winner
    assert table1.loc[("llama2-13b", "lora"), "setting"] == "method defaults (no grid)"

    full = json.loads((results / "runs/llama2-7b/flan/full/default/seed0/train_summary.json").read_text())
    assert full["substitutions"] == ["optimizer paged_adamw_32bit -> adamw_torch (no CUDA)"]
    assert full["activation_checkpointing"] is True
    released = json.loads((results / "runs/llama2-7b/mix/full/default/seed0/method.json").read_text())
    assert released["released"] == "allenai/tulu-2-7b"

    table3 = pd.read_csv(results / "table3.csv")
    assert (table3["status"] == "ok").all(), table3.to_string()
    table4 = pd.read_csv(results / "table4.csv")
    assert set(table4["method"]) >= {"LoRA", "SFT-AG", "SFT-MA", "(IA)3"}
    grid_mmlu = json.loads(next((results / "evals/llama2-7b/flan/lora").glob("lr=*/seed0/mmlu.json")).read_text())
    assert grid_mmlu["settings"]["split"] == "validation"  # the grid scores MMLU's dev split
    assert "no published counterpart for llama2-7b" in (results / "table1_vs_paper.md").read_text()
