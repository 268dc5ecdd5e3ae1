"""The smoke slice, end to end: real SmolLM2-135M, packaged data, LoRA steps, GSM and its
answer likelihood, Table 1."""
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


@pytest.mark.slow
def test_smoke_slice_writes_one_real_cell(tmp_path):
    results = tmp_path / "results"
    cache = os.environ.get("SFT_CACHE", str(ROOT / ".cache"))
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile=config/smoke.yaml",
         "--config", f"results_dir={results}", f"cache_dir={cache}", "--",
         f"{results}/table1.csv"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    print(f"smoke slice wall time: {time.time() - start:.0f} s")

    table = pd.read_csv(results / "table1.csv")
    values = table[[c for c in table.columns if "/" in c and not c.endswith(DERIVED_SUFFIXES)]]
    assert values.notna().sum().sum() == 2, table.to_string()
    lora = table.set_index("method").loc["LoRA"]
    assert 0.0 <= lora["mix/gsm_low"] <= lora["mix/gsm"] <= lora["mix/gsm_high"] <= 100.0
    assert lora["mix/gsm_bpb_low"] <= lora["mix/gsm_bpb"] <= lora["mix/gsm_bpb_high"]
    assert lora["mix/gsm_bpb"] > 0.0  # bits per byte of the gold solutions
    assert (results / "table1_vs_reference.md").exists()  # LoRA is the reference: no rows
    assert list(table["method"]) == ["LoRA"]  # the rows are the config's methods
    assert "not run in this config (flan/mmlu" in lora["notes"]  # and the columns the paper's

    run = results / "runs/smollm2-135m/mix/lora/default/seed0"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary.get("status") != "failed", summary
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len([s for s in steps if "loss" in s]) >= 1
    gsm = json.loads((results / "evals/smollm2-135m/mix/lora/default/seed0/gsm.json").read_text())
    assert gsm["n_items"] == 4 and len(gsm["samples"]) == 4
    assert "Answer the following questions." in gsm["samples"][0]["prompt"]
    bpb = json.loads((results / "evals/smollm2-135m/mix/lora/default/seed0/gsm_bpb.json").read_text())
    assert bpb["n_items"] == 8 and all(x["bits"] > 0 and x["bytes"] > 0 for x in bpb["samples"])
