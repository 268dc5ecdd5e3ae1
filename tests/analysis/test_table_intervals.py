"""Tables from tiny evaluation directories: every measured cell carries its interval, seeds
their spread, and the companion table compares each method with the reference on the same items."""
import json

import numpy as np
import pandas as pd
import pytest

from analysis import reference_comparison as rc
from analysis import tables
from analysis.intervals import wilson_interval
from analysis.results import read_cell
from fake_evals import accuracy, bpb, heldout, humaneval, index_of, tydiqa, write_run

LABELS = {"original": "Original", "lora": "LoRA", "sft-ag": "SFT-AG"}
COLS = [("mix", "gsm"), ("mix", "bbh"), ("mix", "tydiqa"), ("mix", "humaneval"),
        ("mix", "heldout_loss"), ("mix", "gsm_bpb")]
KEYS = {"gsm": "gsm", "bbh": "bbh", "tydiqa": "tydiqa", "humaneval": "humaneval",
        "heldout_loss": "heldout_loss:mix", "gsm_bpb": "gsm_bpb"}
N = 60


def results(rng, skill):
    """A run whose answers are right with probability `skill` (same items for every run)."""
    right = rng.uniform(size=N) < skill
    return {"gsm": accuracy("gsm", right),
            "bbh": accuracy("bbh", right, tasks=["a"] * 20 + ["b"] * 40),
            "tydiqa": tydiqa(list(np.clip(skill + rng.normal(0, 0.2, N), 0, 1)), ["en"] * 30 + ["fi"] * 30),
            "humaneval": humaneval(list(right.astype(float))),
            "heldout_loss:mix": heldout(list(rng.uniform(20, 40, N) * (2 - skill)), [10] * N),
            "gsm_bpb": bpb("gsm", list(rng.uniform(5, 15, N) * (2 - skill)), [10] * N)}


@pytest.fixture
def evals(tmp_path):
    rng = np.random.default_rng(0)
    for method, skill in [("original", 0.2), ("lora", 0.5), ("sft-ag", 0.9)]:
        write_run(tmp_path, "m", "mix", method, results(rng, skill))
    return tmp_path


def read(root, seeds=(0,), labels=LABELS, planned=None):
    planned = planned or {m: COLS for m in labels}
    return tables.read_cells(index_of(root), ["m"], list(labels), COLS, planned, list(seeds))


def test_every_measured_cell_has_an_interval_around_its_value(evals):
    table = tables.build_table(read(evals), ["m"], LABELS, COLS)
    for col in map(lambda c: tables.column_name(*c), COLS):
        assert table[col].notna().all()
        assert (table[col + "_low"] <= table[col]).all() and (table[col] <= table[col + "_high"]).all()
        assert (table[col + "_low"] < table[col + "_high"]).all()
    assert "mix/gsm_seed_sd" not in table.columns  # one seed: no spread to show
    lora = table.set_index("method_id").loc["lora"]
    right = json.loads((evals / "m/mix/lora/seed0/gsm.json").read_text())["samples"]
    low, high = wilson_interval(sum(s["correct"] for s in right), N)  # plain accuracy: Wilson
    assert (lora["mix/gsm_low"], lora["mix/gsm_high"]) == pytest.approx((100 * low, 100 * high), abs=1e-4)
    assert lora["mix/heldout_loss"] < 5 and lora["mix/gsm_bpb"] < 3  # unscaled, unlike the %
    assert lora["notes"] == ""


def test_written_formats_show_intervals(evals, tmp_path):
    table = tables.build_table(read(evals), ["m"], LABELS, COLS)
    out = tmp_path / "out" / "table1.csv"
    tables.write_table(table, out)
    csv = pd.read_csv(out)
    assert {"mix/gsm", "mix/gsm_low", "mix/gsm_high"} <= set(csv.columns)
    row = csv.set_index("method_id").loc["lora"]
    md = out.with_suffix(".md").read_text()
    assert "mixture GSM bits/byte" in md and "mixture held-out loss" in md
    assert f"{row['mix/gsm']:.1f} [{row['mix/gsm_low']:.1f}, {row['mix/gsm_high']:.1f}]" in md
    assert (f"{row['mix/heldout_loss']:.2f} [{row['mix/heldout_loss_low']:.2f}, "
            f"{row['mix/heldout_loss_high']:.2f}]") in md
    # the held-out loss says how many tokens it scored; benchmarks have no such column
    assert row["mix/heldout_loss_tokens"] == 10 * N and "mix/gsm_tokens" not in csv.columns
    assert f"{10 * N:,} tokens" in md
    tex = out.with_suffix(".tex").read_text()
    half = (row["mix/gsm_high"] - row["mix/gsm_low"]) / 2
    assert f"{row['mix/gsm']:.1f} $\\pm$ {half:.1f}" in tex and "nan" not in tex + md


def test_seeds_mean_interval_and_spread(tmp_path):
    rng = np.random.default_rng(1)
    for seed, skill in [(0, 0.4), (1, 0.6)]:
        write_run(tmp_path, "m", "mix", "lora", results(rng, skill), seed=seed)
    cells = read(tmp_path, seeds=(0, 1, 2), labels={"lora": "LoRA"})
    table = tables.build_table(cells, ["m"], {"lora": "LoRA"}, COLS)
    row = table.iloc[0]
    scores = [json.loads((tmp_path / f"m/mix/lora/seed{s}/gsm.json").read_text())["score"] * 100
              for s in (0, 1)]
    assert row["mix/gsm"] == pytest.approx(np.mean(scores), abs=1e-4)
    assert row["mix/gsm_seed_sd"] == pytest.approx(np.std(scores, ddof=1), abs=1e-4)
    assert row["mix/gsm_low"] < row["mix/gsm"] < row["mix/gsm_high"]
    assert "2 of 3 seeds (all)" in row["notes"]
    out = tmp_path / "t.csv"
    tables.write_table(table, out)
    assert f"(seed sd {row['mix/gsm_seed_sd']:.1f})" in out.with_suffix(".md").read_text()


def test_companion_pairs_seeds_and_gives_their_spread(tmp_path):
    """Two seeds each: the difference of the seeds' means, with the sd over seeds of seed s
    against the reference's seed s; one seed has no spread."""
    def right_of_100(k):
        return {"gsm": accuracy("gsm", [True] * k + [False] * (100 - k))}

    for seed, (ours, ref) in enumerate([(70, 50), (60, 55)]):
        write_run(tmp_path, "m", "mix", "sft-ag", right_of_100(ours), seed=seed)
        write_run(tmp_path, "m", "mix", "lora", right_of_100(ref), seed=seed)
    cols, labels = [("mix", "gsm")], {"lora": "LoRA", "sft-ag": "SFT-AG"}
    both = tables.read_cells(index_of(tmp_path), ["m"], list(labels), cols, dict.fromkeys(labels, cols), [0, 1])
    row = rc.compare_to_reference(both, ["m"], labels, cols, "lora").iloc[0]
    assert row["difference"] == pytest.approx(((70 + 60) - (50 + 55)) / 2)
    assert row["difference_seed_sd"] == pytest.approx(np.std([20, 5], ddof=1))
    one = tables.read_cells(index_of(tmp_path), ["m"], list(labels), cols, dict.fromkeys(labels, cols), [0])
    assert rc.compare_to_reference(one, ["m"], labels, cols, "lora").iloc[0]["difference_seed_sd"] is None
    out = tmp_path / "versus.csv"
    rc.write_reference_comparison(rc.compare_to_reference(both, ["m"], labels, cols, "lora"), out,
                                  "Table 1", "LoRA")
    assert f"(seed sd {np.std([20, 5], ddof=1):.1f})" in out.with_suffix(".md").read_text()


def test_result_without_samples_keeps_its_value_and_says_why(tmp_path):
    write_run(tmp_path, "m", "mix", "lora", {"gsm": {"score": 0.5, "n_items": 4}})
    cols = [("mix", "gsm")]
    cells = tables.read_cells(index_of(tmp_path), ["m"], ["lora"], cols, {"lora": cols}, [0])
    row = tables.build_table(cells, ["m"], {"lora": "LoRA"}, cols).iloc[0]
    assert row["mix/gsm"] == 50.0 and pd.isna(row["mix/gsm_low"])
    assert row["notes"] == "no per-item samples: no interval (all)"


def test_samples_that_do_not_give_the_score_are_an_error(tmp_path):
    bad = accuracy("gsm", [True, False])
    bad["score"] = 0.9
    index = write_run(tmp_path, "m", "mix", "lora", {"gsm": bad})
    with pytest.raises(ValueError, match=r"gsm\.json: the samples of 'gsm' give 0\.5"):
        read_cell(index, "gsm")
    index = write_run(tmp_path, "m", "mix", "sft-ag", {"tydiqa": {"score": 0.1, "samples": [{"id": 1}]}})
    with pytest.raises(ValueError, match=r"tydiqa\.json: samples of 'tydiqa' do not hold"):
        read_cell(index, "tydiqa")


def test_companion_table_against_the_reference(evals, tmp_path):
    cells = read(evals)
    versus = rc.compare_to_reference(cells, ["m"], LABELS, COLS, "lora")
    assert set(versus["method_id"]) == {"original", "sft-ag"} and len(versus) == 2 * len(COLS)
    v = versus.set_index(["method_id", "column"])
    table = tables.build_table(cells, ["m"], LABELS, COLS).set_index("method_id")
    for method in ("original", "sft-ag"):
        for col in map(lambda c: tables.column_name(*c), COLS):
            row = v.loc[(method, col)]
            assert row["difference"] == pytest.approx(table.loc[method, col] - table.loc["lora", col],
                                                      abs=1e-3)
            assert row["difference_low"] <= row["difference"] <= row["difference_high"]
            assert row["n_items"] == N and row["note"] == ""
    better = v.loc[("sft-ag", "mix/gsm")]  # 0.9 vs 0.5 right: clearly better
    assert better["test"] == "McNemar exact" and better["p_value"] < 1e-4 and better["difference_low"] > 0
    assert v.loc[("sft-ag", "mix/tydiqa"), "test"] == "paired bootstrap"
    loss = v.loc[("sft-ag", "mix/heldout_loss")]
    assert loss["lower_is_better"] and loss["difference_high"] < 0
    assert v.loc[("original", "mix/gsm"), "difference_high"] < 0

    out = tmp_path / "table1_vs_reference.csv"
    rc.write_reference_comparison(versus, out, "Table 1", "LoRA")
    assert pd.read_csv(out).shape == (2 * len(COLS), len(rc.COLUMNS))
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Table 1: each method minus LoRA, on the same items")
    assert f"{better['difference']:+.1f} [{better['difference_low']:+.1f}, " in md


def test_companion_cells_without_a_comparison_say_why(evals, tmp_path):
    cells = read(evals, planned={"original": COLS, "lora": COLS[:1], "sft-ag": COLS[1:]})
    v = rc.compare_to_reference(cells, ["m"], LABELS, COLS, "lora").set_index(["method_id", "column"])
    assert v.loc[("sft-ag", "mix/gsm"), "note"] == "SFT-AG: not run in this config"
    assert v.loc[("original", "mix/bbh"), "note"] == "reference LoRA: not run in this config"
    assert pd.isna(v.loc[("original", "mix/bbh"), "difference"])
    assert v.loc[("original", "mix/gsm"), "note"] == ""
    none = rc.compare_to_reference(cells, ["m"], LABELS, COLS, "qlora")
    assert (none["note"] == "the reference 'qlora' is not a method of this table").all()


def test_companion_refuses_different_items(tmp_path):
    write_run(tmp_path, "m", "mix", "lora", {"gsm": accuracy("gsm", [True, False, True])})
    other = accuracy("gsm", [True, True, True])
    other["samples"][2]["id"] = "gsm-other"
    write_run(tmp_path, "m", "mix", "sft-ag", {"gsm": other})
    cols = [("mix", "gsm")]
    labels = {"lora": "LoRA", "sft-ag": "SFT-AG"}
    cells = tables.read_cells(index_of(tmp_path), ["m"], list(labels), cols, {m: cols for m in labels}, [0])
    row = rc.compare_to_reference(cells, ["m"], labels, cols, "lora").iloc[0]
    assert pd.isna(row["difference"])
    assert row["note"].startswith("not scored on the same items as LoRA: different items: 1 missing, 1 extra")
