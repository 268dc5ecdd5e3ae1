"""Table 3 from fixture records: ratios vs LoRA and vs the floor, goals, markdown, figure."""
import json

import pandas as pd
import pytest

from analysis.table3 import (build_table3, performance_goals, read_records, reselection_overhead,
                             write_table3)
from baselines import method_facts

# What study.table3 hands analysis: each method's facts from its method file.
FACTS = {m: method_facts(m) for m in ["lora", "sft-ag", "sft-ma", "original", "qlora", "qsft-ma",
                                      "original-4bit"]}


def record(method, ac, time_s, peak_mb, status="ok", **extra):
    spec = {"model_path": "/x/smollm2-135m", "method": method, "activation_checkpointing": ac,
            "batch_size": 4, "seq_len": 128, "steps": 5}
    r = {"spec": spec, "status": status, "model": "smollm2-135m"}
    if status == "ok":
        r.update(mean_step_s=time_s, peak_rss_mb=peak_mb, trainable_params=100,
                 step_times_s=[time_s] * 5, hook_times_s=[0.0] * 5)
    else:
        r["error"] = "exit code 1: boom"
    r.update(extra)
    return r


@pytest.fixture
def records(tmp_path):
    rs = [record("original", False, 2.0, 1000), record("lora", False, 2.5, 1300),
          record("sft-ag", False, 2.4, 1200), record("sft-ma", False, 2.0, 1150),
          record("original", True, 2.6, 800), record("lora", True, 3.2, 900),
          record("sft-ag", True, 3.0, 1000, status="failed"),
          record("original-4bit", False, 10.0, 700), record("qlora", False, 20.0, 900),
          record("qsft-ma", False, 15.0, 800)]
    paths = []
    for i, r in enumerate(rs):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(r))
    return read_records(paths)


def row(table, method, ac=False):
    return table[(table.method_id == method) & (table.activation_checkpointing == ac)].iloc[0]


def test_ratios_against_lora_and_the_floor(records):
    t = build_table3(records, FACTS)
    ag = row(t, "sft-ag")
    assert ag.time_vs_lora == pytest.approx(2.4 / 2.5)
    assert ag.time_vs_floor == pytest.approx(2.4 / 2.0)
    assert ag.above_floor_mb == pytest.approx(200)
    assert ag.above_floor_vs_lora == pytest.approx(200 / 300)
    assert ag.peak_vs_floor == pytest.approx(1.2)
    assert row(t, "lora").time_vs_lora == pytest.approx(1.0)
    assert row(t, "original").time_vs_floor == pytest.approx(1.0)
    assert row(t, "lora", True).time_vs_floor == pytest.approx(3.2 / 2.6)  # same ckpt setting


def test_quantized_methods_compare_with_qlora_and_the_4bit_floor(records):
    t = build_table3(records, FACTS)
    q = row(t, "qsft-ma")
    assert q.time_vs_lora == pytest.approx(15 / 20)
    assert q.time_vs_floor == pytest.approx(1.5)
    assert q.above_floor_vs_lora == pytest.approx(100 / 200)


def test_failed_measurement_is_an_empty_cell_with_a_note(records):
    t = build_table3(records, FACTS)
    failed = row(t, "sft-ag", True)
    assert failed.status == "failed" and pd.isna(failed.time_s) and "boom" in failed.notes
    assert list(t[~t.activation_checkpointing].method_id)[:4] == ["original", "lora", "sft-ag", "sft-ma"]


def test_goals_are_checked_against_their_bounds(records):
    goals = performance_goals(build_table3(records, FACTS), FACTS)
    g = goals[~goals.activation_checkpointing].set_index("goal")
    assert g.loc["SFT-AG time_vs_lora <= 1", "met"] is True  # 0.96
    assert g.loc["SFT-MA time_vs_lora <= 0.95", "measured"] == pytest.approx(0.8)
    assert g.loc["SFT-AG time_vs_floor <= 1.15", "met"] is False  # 1.20
    assert g.loc["SFT-MA above_floor_vs_lora <= 1", "met"] is True  # 150 / 300
    assert g.loc["SFT-AG reselection overhead <= 3%", "met"] is None  # window shorter than S


def test_reselection_overhead_is_the_steady_cycle_over_s_plain_steps():
    # gamma = 2, S = 4 from step 1: estimate, first-reselect, plain, estimate, reselect, plain.
    phases = ["estimate", "first-reselect", "plain", "estimate", "reselect", "plain"]
    times = [1.5, 9.0, 1.0, 1.2, 1.4, 1.0]
    r = {"method_config": {"reselection_steps": 4}, "step_phases": phases, "step_times_s": times}
    # (1.2 + 1.4 - 2 x 1.0) / (4 x 1.0): the first reselection's 9 s is a one-off, left out
    assert reselection_overhead(r) == pytest.approx(0.15)
    first_only = dict(r, step_phases=phases[:3], step_times_s=times[:3])
    assert reselection_overhead(first_only) is None  # no steady-state cycle in the window
    lora = {"method_config": {"r": 16}, "step_phases": ["plain"] * 6, "step_times_s": times}
    assert reselection_overhead(lora) is None


def test_duplicates_and_malformed_files_are_refused(tmp_path, records):
    with pytest.raises(ValueError, match="duplicate measurement"):
        build_table3(records + [dict(records[0], _path="again.json")], FACTS)
    bad = tmp_path / "bad.json"
    bad.write_text("{\"status\": \"ok\"}")
    with pytest.raises(ValueError, match="bad.json.*'spec'"):
        read_records([bad])


def test_outputs_csv_markdown_and_a_rendered_figure(tmp_path, records):
    write_table3(records, FACTS, tmp_path / "table3.csv", tmp_path / "table3.md",
                 tmp_path / "figure_memory_time.png")
    csv = pd.read_csv(tmp_path / "table3.csv")
    assert len(csv) == len(records) and {"time_vs_lora", "above_floor_vs_lora"} <= set(csv.columns)
    md = (tmp_path / "table3.md").read_text()
    assert "batch 4 x 128 tokens, 5 measured steps" in md and "| SFT-AG | no |" in md
    png = (tmp_path / "figure_memory_time.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
