"""Table builder: fixture evaluation files give the expected CSV/Markdown and empty-cell reasons."""
import json

import pandas as pd

from analysis import tables

LABELS = {"original": "Original", "full": "FullFT", "ia3": "(IA)3", "lora": "LoRA",
          "sft-ag": "SFT-AG", "sft-ma": "SFT-MA", "sift": "SIFT"}


def index_in(root):
    """Where the fixture writes a run's index (untuned runs under mixture "none")."""
    def index_of(model, role, method, seed):
        mixture = "none" if method == "original" else role
        return root / model / mixture / method / "default" / f"seed{seed}" / "index.json"
    return index_of


def build(index_of, models, labels, columns, planned, seeds):
    cells = tables.read_cells(index_of, models, list(labels), columns, planned, seeds)
    return tables.build_table(cells, models, labels, columns)


def write_eval(root, model, mixture, method, scores, status="ok"):
    d = root / model / mixture / method / "default" / "seed0"
    d.mkdir(parents=True)
    if status != "ok":
        (d / "index.json").write_text(json.dumps({"status": "failed", "error": "OOM at step 3"}))
        return
    for bench, score in scores.items():
        (d / f"{bench}.json").write_text(json.dumps({"benchmark": bench, "score": score, "n_items": 4}))
    (d / "index.json").write_text(json.dumps({"status": "ok", "benchmarks": {b: f"{b}.json" for b in scores}}))


def test_table1_real_cells_and_reasons(tmp_path):
    write_eval(tmp_path, "m", "mix", "lora", {"gsm": 0.25})
    d = tmp_path / "m" / "mix" / "lora" / "default" / "seed0"
    (d / "tydiqa.json").write_text(json.dumps({"score": None, "note": "no TyDiQA data: set evals.tydiqa.path or use the hub"}))
    (d / "index.json").write_text(json.dumps({"status": "ok", "benchmarks": {"gsm": "gsm.json", "tydiqa": "tydiqa.json"}}))
    write_eval(tmp_path, "m", "mix", "sft-ag", {}, status="failed")
    planned = {"lora": [("mix", "gsm"), ("mix", "tydiqa")], "sft-ag": [("mix", "gsm")]}
    table = build(index_in(tmp_path), ["m"], LABELS, tables.TABLE1_COLUMNS,
                               planned, [0])
    assert list(table["method"]) == ["Original", "FullFT", "(IA)3", "LoRA", "SFT-AG", "SFT-MA", "SIFT"]
    lora = table.set_index("method").loc["LoRA"]
    assert lora["mix/gsm"] == 25.0
    assert lora[["flan/mmlu", "mix/bbh"]].isna().all()
    assert "not run in this config" in lora["notes"]
    assert "no TyDiQA data: set evals.tydiqa.path or use the hub (mix/tydiqa)" in lora["notes"]
    sft = table.set_index("method").loc["SFT-AG"]
    assert pd.isna(sft["mix/gsm"]) and "failed: OOM at step 3 (mix/gsm)" in sft["notes"]
    # exactly one real number in the whole table (its file has no samples, so no interval)
    assert table.drop(columns=["model", "method", "method_id", "notes"]).notna().sum().sum() == 1
    assert "no per-item samples: no interval (mix/gsm)" in lora["notes"]


def test_written_formats(tmp_path):
    write_eval(tmp_path, "m", "mix", "lora", {"gsm": 0.5})
    cols = [("mix", "gsm"), ("mix", "mmlu")]
    table = build(index_in(tmp_path), ["m"], {"lora": "LoRA"}, cols, {"lora": cols[:1]}, [0])
    out = tmp_path / "t" / "table1.csv"
    tables.write_table(table, out)
    assert pd.read_csv(out).loc[0, "mix/gsm"] == 50.0
    md = out.with_suffix(".md").read_text()
    assert "mixture GSM" in md and "50.0" in md and "nan" not in md
    assert "50.0" in out.with_suffix(".tex").read_text()


def test_losses_keep_two_decimals_where_scores_keep_one(tmp_path):
    write_eval(tmp_path, "m", "mix", "lora", {"gsm": 0.5, "heldout_loss:mix": 2.4412})
    cols = [("mix", "gsm"), ("mix", "heldout_loss"), ("mix", "mmlu")]
    table = build(index_in(tmp_path), ["m"], {"lora": "LoRA"}, cols, {"lora": cols[:2]}, [0])
    out = tmp_path / "table1.csv"
    tables.write_table(table, out)
    md_row = out.with_suffix(".md").read_text().splitlines()[2]
    assert [c.strip() for c in md_row.split("|")[3:6]] == ["50.0", "2.44", ""]
    tex = out.with_suffix(".tex").read_text()
    assert "50.0 & 2.44 & --" in tex


def test_mean_over_seeds_and_missing_seed(tmp_path):
    for seed, score in [(0, 0.2), (1, 0.4)]:
        d = tmp_path / "m" / "mix" / "lora" / "default" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "gsm.json").write_text(json.dumps({"score": score}))
        (d / "index.json").write_text(json.dumps({"status": "ok", "benchmarks": {"gsm": "gsm.json"}}))
    cols = [("mix", "gsm")]
    t = build(index_in(tmp_path), ["m"], {"lora": "LoRA"}, cols, {"lora": cols}, [0, 1])
    assert abs(t.loc[0, "mix/gsm"] - 30.0) < 1e-9
    t = build(index_in(tmp_path), ["m"], {"lora": "LoRA"}, cols, {"lora": cols}, [0, 1, 2])
    assert abs(t.loc[0, "mix/gsm"] - 30.0) < 1e-9 and "2 of 3 seeds" in t.loc[0, "notes"]


def test_answer_likelihood_columns_are_extra_unscaled_and_only_where_asked(tmp_path):
    write_eval(tmp_path, "m", "mix", "lora", {"gsm": 0.5, "gsm_bpb": 1.2345})
    planned = {"lora": [("mix", "gsm"), ("mix", "gsm_bpb")]}
    cols = tables.table_columns("table1", planned)
    assert cols == tables.TABLE1_COLUMNS + [("mix", "gsm_bpb")]
    assert ("mix", "gsm_bpb") not in tables.table_columns("table1", {"lora": [("mix", "gsm")]})
    table = build(index_in(tmp_path), ["m"], {"lora": "LoRA"}, cols, planned, [0])
    row = table.iloc[0]
    assert (row["mix/gsm"], row["mix/gsm_bpb"]) == (50.0, 1.2345)  # bits per byte, not a percentage
    out = tmp_path / "table1.csv"
    tables.write_table(table, out)
    md = out.with_suffix(".md").read_text()
    assert "mixture GSM bits/byte" in md and "1.23" in md
