"""The paper's Tables 1-3 as reference data, and our tables compared with them cell by cell."""
import math

import pandas as pd
import pytest

from analysis import paper_comparison as pc
from analysis import tables
from analysis.table3 import build_table3
from baselines import method_facts

MODELS = {
    "smollm2-135m": {"size": "135m", "gguf": [], "sha256": "0"},
    "llama2-7b": {"size": "7b", "hub": "meta-llama/Llama-2-7b-hf"},
    "llama2-13b": {"size": "13b", "hub": "meta-llama/Llama-2-13b-hf"},
    "gemma-hub": {"size": "270m", "hub": "google/gemma-3-270m"},
}


def paper_value(table, model, method_id, **key):
    ref = pc.reference(table)
    sel = (ref["model"] == model) & (ref["method_id"] == method_id)
    for col, v in key.items():
        sel &= ref[col] == v
    assert sel.sum() == 1, (table, model, method_id, key)
    return ref.loc[sel].iloc[0]


# --- reference data -----------------------------------------------------------------------

def test_reference_shapes_and_sources():
    t1, t2, t3 = pc.reference(1), pc.reference(2), pc.reference(3)
    assert len(t1) == 2 * 6 * 8 and t1["value"].notna().sum() == 93
    assert len(t2) == 2 * 4 * 3 and t2["value"].notna().all()
    assert len(t3) == 2 * 6 * 2 * 2 and t3["value"].notna().all()
    for ref in (t1, t2, t3):
        assert ref["source"].str.match(r"Table [123], row '.+', Llama-2-1?[37]b, ").all()
        assert set(ref["model"]) == {"Llama-2-7b", "Llama-2-13b"}
        assert not ref.duplicated([c for c in ref.columns
                                   if c not in ("value", "source", "note", "method")]).any()
    assert set(t1["method_id"]) == {"original", "full", "ia3", "lora", "sft-ag", "sft-ma"}
    assert set(t2["method_id"]) == {"original-4bit", "qlora", "qsft-ag", "qsft-ma"}
    # our table layouts' columns are exactly the paper's
    assert set(zip(t1["role"], t1["benchmark"])) == set(tables.TABLE1_COLUMNS)
    assert set(zip(t2["role"], t2["benchmark"])) == set(tables.TABLE2_COLUMNS)
    assert set(t1["method"]) | set(t2["method"]) <= {
        "Original", "Full FT", "(IA)3", "LoRA", "SFT-AG", "SFT-MA", "Original (4-bit)", "qLoRA",
        "qSFT-AG", "qSFT-MA"}


@pytest.mark.parametrize("model, method, role, bench, value", [
    ("Llama-2-7b", "original", "flan", "mmlu", 45.8),
    ("Llama-2-7b", "full", "mix", "humaneval", 22.6),
    ("Llama-2-7b", "ia3", "mix", "gsm", 17.0),
    ("Llama-2-7b", "lora", "flan", "mmlu", 49.3),
    ("Llama-2-7b", "sft-ag", "mix", "tydiqa", 59.4),
    ("Llama-2-7b", "sft-ma", "single", "humaneval", 16.2),
    ("Llama-2-13b", "original", "mix", "bbh", 47.8),
    ("Llama-2-13b", "full", "mix", "gsm", 50.0),
    ("Llama-2-13b", "lora", "mix", "bbh", 54.6),
    ("Llama-2-13b", "sft-ag", "flan", "tydiqa", 62.5),
    ("Llama-2-13b", "sft-ma", "mix", "humaneval", 20.2),
])
def test_table1_spot_checks(model, method, role, bench, value):
    assert paper_value(1, model, method, role=role, benchmark=bench)["value"] == value


def test_table1_empty_and_dagger_cells_say_why():
    ref = pc.reference(1)
    empty = ref[ref["value"].isna()]
    assert set(zip(empty["model"], empty["method_id"], empty["role"])) == {
        ("Llama-2-13b", "full", "flan"), ("Llama-2-13b", "full", "single")}
    assert empty["note"].str.contains("computational expense").all()
    dagger = ref[ref["note"].str.contains("†")]
    assert len(dagger) == 10 and set(dagger["method_id"]) == {"full"}
    assert set(dagger["role"]) == {"mix"}
    # the untuned model repeats its scores under every mixture
    orig = ref[ref["method_id"] == "original"].set_index(["model", "role", "benchmark"])["value"]
    assert orig[("Llama-2-7b", "flan", "mmlu")] == orig[("Llama-2-7b", "mix", "mmlu")] == 45.8
    assert orig[("Llama-2-13b", "single", "humaneval")] == orig[("Llama-2-13b", "mix", "humaneval")]


@pytest.mark.parametrize("model, method, role, bench, value", [
    ("Llama-2-7b", "original-4bit", "flan", "mmlu", 44.8),
    ("Llama-2-7b", "qlora", "flan", "tydiqa", 54.3),
    ("Llama-2-7b", "qsft-ma", "flan", "tydiqa", 52.7),
    ("Llama-2-7b", "qsft-ag", "single", "humaneval", 15.3),
    ("Llama-2-13b", "original-4bit", "single", "humaneval", 15.5),
    ("Llama-2-13b", "qsft-ma", "flan", "tydiqa", 61.7),
    ("Llama-2-13b", "qsft-ag", "flan", "mmlu", 55.5),
])
def test_table2_spot_checks(model, method, role, bench, value):
    assert paper_value(2, model, method, role=role, benchmark=bench)["value"] == value


@pytest.mark.parametrize("model, method, quantity, ac, value", [
    ("Llama-2-7b", "lora", "memory", False, 40), ("Llama-2-7b", "lora", "memory", True, 18),
    ("Llama-2-7b", "sft-ag", "time", False, 33.4), ("Llama-2-7b", "qlora", "memory", True, 8),
    ("Llama-2-7b", "qsft-ma", "time", True, 55.5), ("Llama-2-13b", "lora", "time", True, 64.0),
    ("Llama-2-13b", "sft-ma", "memory", False, 51), ("Llama-2-13b", "qsft-ag", "time", True, 101.1),
    ("Llama-2-13b", "qlora", "memory", True, 12), ("Llama-2-13b", "qsft-ma", "memory", False, 35),
])
def test_table3_spot_checks(model, method, quantity, ac, value):
    row = paper_value(3, model, method, quantity=quantity, activation_checkpointing=ac)
    assert row["value"] == value
    assert row["unit"] == {"memory": "GB", "time": "s"}[quantity]
    assert ("right of '/'" if ac else "left of '/'") in row["source"]


def test_table3_orderings_the_text_states():
    """§5.2: SFT-MA uses less memory and time than SFT-AG everywhere; with quantization and
    checkpointing qLoRA needs the least memory; checkpointing always saves memory, costs time."""
    ref = pc.reference(3).set_index(["model", "method_id", "quantity", "activation_checkpointing"])
    v = ref["value"]
    for model in ("Llama-2-7b", "Llama-2-13b"):
        for q in ("memory", "time"):
            for ac in (False, True):
                assert v[(model, "sft-ma", q, ac)] < v[(model, "sft-ag", q, ac)]
                assert v[(model, "qsft-ma", q, ac)] < v[(model, "qsft-ag", q, ac)]
        assert v[(model, "qlora", "memory", True)] < min(
            v[(model, m, "memory", True)] for m in ("qsft-ag", "qsft-ma"))
        for m in ("lora", "sft-ag", "sft-ma", "qlora", "qsft-ag", "qsft-ma"):
            assert v[(model, m, "memory", True)] < v[(model, m, "memory", False)]
            assert v[(model, m, "time", True)] > v[(model, m, "time", False)]


# The paper's rows as printed (7b rows first, then 13b; Table 3: "7b mem 7b time 13b mem 13b
# time", each "without/with activation checkpointing"): every cell of the CSVs against them.
TABLE1_PRINTED = """
Original 45.8 50.9 13.5 45.8 13.0 40.6 50.9 13.5
FullFT 50.5 55.5 15.2 51.3† 34.5† 45.3† 56.5† 22.6†
(IA)3 46.7 51.6 14.7 47.8 17.0 40.6 52.2 15.5
LoRA 49.3 55.3 15.7 51.3 22.0 43.8 58.0 15.5
SFT-AG 50.7 56.2 15.6 51.5 23.0 44.8 59.4 17.1
SFT-MA 48.8 55.8 16.2 49.5 16.5 44.7 56.7 15.3
Original 55.3 60.3 17.8 55.3 23.0 47.8 60.3 17.8
FullFT - - - 56.7† 50.0† 51.9† 62.9† 26.7†
(IA)3 55.1 60.1 18.5 55.6 27.5 50.6 62.8 18.1
LoRA 55.8 61.4 19.8 56.2 29.0 54.6 63.9 19.5
SFT-AG 55.8 62.5 20.0 55.9 31.5 52.8 63.5 20.3
SFT-MA 55.5 62.5 19.9 55.9 29.0 51.2 62.8 20.2
"""
TABLE2_PRINTED = """
Original(4-bit) 44.8 50.2 11.0
qLoRA 47.7 54.3 13.3
qSFT-AG 48.8 54.9 15.3
qSFT-MA 48.3 52.7 15.3
Original(4-bit) 54.7 59.6 15.5
qLoRA 55.0 60.7 18.2
qSFT-AG 55.5 61.5 18.8
qSFT-MA 55.4 61.7 18.4
"""
TABLE3_PRINTED = """
LoRA 40/18 30.5/42.5 66/31 45.9/64.0
SFT-AG 34/20 33.4/44.8 56/36 56.2/76.3
SFT-MA 30/17 30.6/41.7 51/31 50.6/70.9
qLoRA 30/ 8 38.5/55.2 46/12 63.6/ 95.3
qSFT-AG 26/13 42.8/58.4 40/19 73.4/101.1
qSFT-MA 22/10 39.6/55.5 35/14 70.1/ 97.3
"""


@pytest.mark.parametrize("table, printed", [(1, TABLE1_PRINTED), (2, TABLE2_PRINTED)])
def test_every_score_matches_the_printed_rows(table, printed):
    ref = pc.reference(table)
    lines = printed.strip().splitlines()
    assert len(lines) == len(ref) // len(set(zip(ref["role"], ref["benchmark"])))
    for i, line in enumerate(lines):
        label, *cells = line.split()
        model = "Llama-2-7b" if i < len(lines) // 2 else "Llama-2-13b"
        got = ref[(ref["model"] == model)
                  & (ref["method"].str.replace(" ", "") == label)]
        assert len(got) == len(cells), line  # file order is the paper's column order
        for printed_cell, (_, row) in zip(cells, got.iterrows()):
            if printed_cell == "-":
                assert pd.isna(row["value"]) and row["note"], row["source"]
            else:
                assert row["value"] == float(printed_cell.rstrip("†")), row["source"]
                assert printed_cell.endswith("†") == ("†" in row["note"]), row["source"]


def test_every_table3_cell_matches_the_printed_rows():
    ref = pc.reference(3).set_index(["model", "method", "quantity", "activation_checkpointing"])
    lines = TABLE3_PRINTED.strip().splitlines()
    assert len(lines) * 8 == len(ref)
    for line in lines:
        label, rest = line.split(" ", 1)
        pairs = rest.replace("/ ", "/").split()
        for (model, quantity), pair in zip(
                [("Llama-2-7b", "memory"), ("Llama-2-7b", "time"),
                 ("Llama-2-13b", "memory"), ("Llama-2-13b", "time")], pairs):
            without, with_ = (float(x) for x in pair.split("/"))
            assert ref.loc[(model, label, quantity, False), "value"] == without, line
            assert ref.loc[(model, label, quantity, True), "value"] == with_, line


# --- model matching -----------------------------------------------------------------------

def test_paper_model_by_hub_id():
    assert pc.paper_model("llama2-7b", MODELS) == ("Llama-2-7b", "meta-llama/Llama-2-7b-hf")
    assert pc.paper_model("llama2-13b", MODELS)[0] == "Llama-2-13b"
    assert pc.paper_model("smollm2-135m", MODELS) == (None, "packaged")
    assert pc.paper_model("gemma-hub", MODELS) == (None, "google/gemma-3-270m")
    assert pc.paper_model("nope", MODELS) == (None, "not in the models config")
    # a Table 3 record without a model name falls back to the hub id's last part
    assert pc.paper_model("Llama-2-7b-hf", MODELS)[0] == "Llama-2-7b"


def test_note_reasons_follow_analysis_tables_format():
    cols = ["flan/mmlu", "flan/tydiqa", "mix/gsm"]
    got = pc.note_reasons("failed: a; b (flan/mmlu); no data (flan/tydiqa, mix/gsm)", cols)
    assert got == {"flan/mmlu": "failed: a; b", "flan/tydiqa": "no data", "mix/gsm": "no data"}
    assert pc.note_reasons("not run in this config (all)", cols) == dict.fromkeys(
        cols, "not run in this config")
    assert pc.note_reasons("", cols) == {}


# --- comparison of a synthetic table ------------------------------------------------------

def ours_table1(models=("llama2-7b",), intervals=True):
    """Our Table 1 as analysis.tables writes it: every score paper + 1.0, a few special cells."""
    ref = pc.reference(1)
    rows = []
    for model in models:
        target = pc.paper_model(model, MODELS)[0] or "Llama-2-7b"
        for method in ["original", "full", "ia3", "lora", "sft-ag", "sft-ma", "sift"]:
            row = {"model": model, "method": method_facts(method)["label"], "method_id": method}
            for role, bench in tables.TABLE1_COLUMNS:
                col = tables.column_name(role, bench)
                hit = ref[(ref["model"] == target) & (ref["method_id"] == method)
                          & (ref["role"] == role) & (ref["benchmark"] == bench)]
                paper = hit["value"].iloc[0] if len(hit) and hit["value"].notna().all() else 30.0
                row[col] = round(paper + 1.0, 2)
                if intervals:
                    row[f"{col}_low"], row[f"{col}_high"] = paper - 0.5, paper + 2.0
            row["notes"] = ""
            rows.append(row)
    return pd.DataFrame(rows)


def test_compare_differences_and_interval_flags(tmp_path):
    ours = ours_table1(("llama2-7b", "smollm2-135m"))
    first = (ours["model"] == "llama2-7b") & (ours["method"] == "LoRA")
    # LoRA Flan v2 MMLU (paper 49.3): ours 47.0 with [46.0, 48.0] -> -2.3, outside
    ours.loc[first, ["flan/mmlu", "flan/mmlu_low", "flan/mmlu_high"]] = [47.0, 46.0, 48.0]
    # a failed cell, reason in notes
    ours.loc[first, "mix/gsm"] = None
    ours.loc[first, "notes"] = "failed: CUDA out of memory (mix/gsm)"
    path = tmp_path / "table1.csv"
    ours.to_csv(path, index=False)

    md_path = tmp_path / "table1_vs_paper.md"
    result = pc.write_comparison(1, path, MODELS, md_path)

    assert set(result["model"]) == {"llama2-7b"}
    cell = result.set_index(["method_id", "cell"])
    lora = cell.loc[("lora", "flan/mmlu")]
    assert lora["paper"] == 49.3 and lora["ours"] == 47.0
    assert math.isclose(lora["difference"], -2.3) and lora["paper_in_interval"] is False
    assert "row 'LoRA', Llama-2-7b, Flan v2 MMLU" in lora["source"]
    sft = cell.loc[("sft-ag", "mix/tydiqa")]  # ours = paper + 1 in [paper - .5, paper + 2]
    assert sft["paper"] == 59.4 and math.isclose(sft["difference"], 1.0)
    assert sft["paper_in_interval"] is True
    both = result.dropna(subset=["ours", "paper"])
    assert len(both) == 48 - 1  # the paper's 7b cells, less our failed one
    others = both.drop(index=both.index[(both["method_id"] == "lora")
                                        & (both["cell"] == "flan/mmlu")])
    assert all(math.isclose(d, 1.0) for d in others["difference"])
    assert others["paper_in_interval"].map(lambda x: x is True).all()
    failed = cell.loc[("lora", "mix/gsm")]
    assert pd.isna(failed["difference"]) and failed["paper_in_interval"] is None
    assert failed["ours_note"] == "failed: CUDA out of memory" and failed["paper"] == 22.0
    # our extra method (SIFT) has no published cell, and says so
    sift = result[result["method_id"] == "sift"]
    assert len(sift) == 8 and sift["paper"].isna().all()
    assert sift["paper_note"].str.contains("no row for this method").all()

    md = md_path.read_text(encoding="utf-8")
    assert "no published counterpart for smollm2-135m (packaged)" in md
    assert "## llama2-7b against the paper's Llama-2-7b" in md
    assert "| LoRA | Flan v2 | MMLU | 47.0 | [46.0, 48.0] | 49.3 | -2.3 | **no** |" in md
    assert "| SFT-AG | Tülu v2 | TyDiQA | 60.4 | [58.9, 61.4] | 59.4 | +1.0 | yes |" in md
    assert "ours: failed: CUDA out of memory" in md
    assert "paper inside our interval in 46 of 47" in md  # the failed cell has no value
    csv = pd.read_csv(md_path.with_suffix(".csv"))
    assert len(csv) == len(result) + 1
    assert csv["paper_note"].iloc[-1] == "no published counterpart for smollm2-135m (packaged)"
    assert not list(tmp_path.glob(".*.tmp"))


def test_13b_full_ft_dash_cells_carry_the_papers_reason():
    result, unmatched = pc.compare(1, ours_table1(("llama2-13b",), intervals=False), MODELS)
    assert unmatched == {}
    full = result[(result["method_id"] == "full") & result["paper"].isna()]
    assert set(full["cell"]) == {"flan/mmlu", "flan/tydiqa", "single/humaneval"}
    assert full["paper_note"].str.contains("not run at 13b").all()
    assert full["difference"].isna().all() and full["ours"].notna().all()


def test_no_intervals_is_tolerated_and_said(tmp_path):
    path = tmp_path / "t.csv"
    ours_table1(intervals=False).to_csv(path, index=False)
    result = pc.write_comparison(1, path, MODELS, tmp_path / "t_vs_paper.md")
    assert result["paper_in_interval"].isna().all()
    md = (tmp_path / "t_vs_paper.md").read_text(encoding="utf-8")
    assert "carries no intervals" in md and "paper in ours" not in md


def test_only_non_paper_models(tmp_path):
    ours = ours_table1(("smollm2-135m", "gemma-hub"), intervals=False)
    path = tmp_path / "table1.csv"
    ours.to_csv(path, index=False)
    result = pc.write_comparison(1, path, MODELS, tmp_path / "out.md")
    assert result.empty
    md = (tmp_path / "out.md").read_text(encoding="utf-8")
    assert "no published counterpart for smollm2-135m (packaged)" in md
    assert "no published counterpart for gemma-hub (google/gemma-3-270m)" in md
    assert "##" not in md


def test_table2_missing_method_row(tmp_path):
    rows = [{"model": "llama2-7b", "method": method_facts(m)["label"], "method_id": m, "flan/mmlu": 48.0,
             "flan/tydiqa": None, "single/humaneval": 14.0,
             "notes": "no data (flan/tydiqa)"} for m in ("original-4bit", "qlora", "qsft-ag")]
    result, _ = pc.compare(2, pd.DataFrame(rows), MODELS)
    cell = result.set_index(["method_id", "cell"])
    assert math.isclose(cell.loc[("qlora", "flan/mmlu"), "difference"], 48.0 - 47.7)
    assert cell.loc[("qlora", "flan/tydiqa"), "ours_note"] == "no data"
    assert (result[result["method_id"] == "qsft-ma"]["ours_note"]
            == "no row for this method in our table").all()


# --- Table 3 ------------------------------------------------------------------------------

def record(model, method, ac, time_s, cap, status="ok"):
    spec = {"model_path": "meta-llama/Llama-2-7b-hf", "method": method,
            "activation_checkpointing": ac, "batch_size": 1, "seq_len": 2048, "steps": 30}
    r = {"spec": spec, "status": status, "model": model, "_path": f"{model}/{method}/{ac}"}
    if status == "ok":
        r.update(mean_step_s=time_s, peak_rss_mb=1000.0, cuda_min_cap_gib=cap)
    else:
        r["error"] = "CUDA out of memory"
    return r


def test_table3_comparison(tmp_path):
    recs = [record("llama2-7b", m, ac, 30.0, 20.0) for m in ("original", "lora", "sft-ag")
            for ac in (False, True)]
    recs += [record("llama2-7b", "sft-ma", False, None, None, status="failed"),
             record("llama2-7b", "sft-ma", True, 40.0, None),  # a CPU-style record: no cap
             record("smollm2-135m", "lora", False, 1.0, None)]
    table = build_table3(recs, {m: method_facts(m) for m in ("lora", "sft-ag", "sft-ma", "original")})
    table["time_s_low"], table["time_s_high"] = table["time_s"] - 1, table["time_s"] + 1
    path = tmp_path / "table3.csv"
    table.to_csv(path, index=False)
    result = pc.write_comparison(3, path, MODELS, tmp_path / "table3_vs_paper.md")

    cell = result.set_index(["method_id", "cell"])
    lora = cell.loc[("lora", "memory/nockpt")]
    assert lora["paper"] == 40 and math.isclose(lora["difference"], -20.0)
    assert lora["paper_in_interval"] is None  # no memory interval in ours
    t = cell.loc[("sft-ag", "time/nockpt")]
    assert t["paper"] == 33.4 and math.isclose(t["difference"], 30.0 - 33.4)
    assert t["paper_in_interval"] is False
    assert "failed" in cell.loc[("sft-ma", "time/nockpt"), "ours_note"]
    assert "no CUDA memory cap" in cell.loc[("sft-ma", "memory/ckpt"), "ours_note"]
    assert math.isclose(cell.loc[("sft-ma", "time/ckpt"), "difference"], 40.0 - 41.7)
    assert cell.loc[("sft-ma", "time/ckpt"), "paper_in_interval"] is False
    assert (result[result["method_id"] == "qlora"]["ours_note"]
            == "no row for this method in our table").all()
    assert cell.loc[("original", "time/ckpt"), "paper_note"].startswith("the paper's Table 3 has no")
    md = (tmp_path / "table3_vs_paper.md").read_text(encoding="utf-8")
    assert "no published counterpart for smollm2-135m (packaged)" in md
    assert "| LoRA | no | memory (GB) | 20.0 |  | 40.0 | -20.0 |  |" in md
    assert "Our measurements: batch 1 x 2048 tokens, 30 measured steps." in md


def test_cli(tmp_path):
    cfg = tmp_path / "models.yaml"
    cfg.write_text("models:\n  llama2-7b:\n    hub: meta-llama/Llama-2-7b-hf\n")
    path = tmp_path / "table1.csv"
    ours_table1(intervals=False).to_csv(path, index=False)
    pc.main(["--table", "1", "--ours", str(path), "--config", str(cfg)])
    assert (tmp_path / "table1_vs_paper.md").exists()
    assert (tmp_path / "table1_vs_paper.csv").exists()


def test_a_table_with_intervals_and_seed_spread_compares(tmp_path):
    """analysis.tables' CSV (value, _low, _high, _seed_sd columns) compares cell by cell."""
    import numpy as np

    from fake_evals import accuracy, index_of, write_run

    rng = np.random.default_rng(0)
    labels = {"lora": "LoRA", "sft-ag": "SFT-AG"}
    cols = [("mix", "gsm"), ("flan", "mmlu")]
    for method in labels:
        for seed in (0, 1):
            write_run(tmp_path, "llama2-7b", "mix", method,
                      {"gsm": accuracy("gsm", list(rng.uniform(size=200) < 0.3))}, seed=seed)
    cells = tables.read_cells(index_of(tmp_path), ["llama2-7b"], list(labels), cols,
                              {m: cols[:1] for m in labels}, [0, 1])
    path = tmp_path / "table1.csv"
    tables.write_table(tables.build_table(cells, ["llama2-7b"], labels, cols), path)
    assert "mix/gsm_seed_sd" in pd.read_csv(path).columns

    result = pc.write_comparison(1, path, MODELS, tmp_path / "table1_vs_paper.md")
    ours = result.dropna(subset=["ours"]).set_index(["method_id", "cell"])
    assert set(ours.index) == {("lora", "mix/gsm"), ("sft-ag", "mix/gsm")}  # no derived columns
    table = pd.read_csv(path).set_index("method_id")
    lora = ours.loc[("lora", "mix/gsm")]
    assert (lora["ours_low"], lora["ours_high"]) == (table.loc["lora", "mix/gsm_low"],
                                                     table.loc["lora", "mix/gsm_high"])
    assert lora["paper"] == 22.0 and lora["paper_in_interval"] in (True, False)
    assert result.set_index(["method_id", "cell"]).loc[("lora", "flan/mmlu"), "ours_note"] == \
        "not run in this config"
