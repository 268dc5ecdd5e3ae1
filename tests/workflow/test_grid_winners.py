"""Tables 1 and 2 train with the grid's winner (Table 4) where the grid searched the method on
the model, as the paper did; elsewhere with the method file's defaults, and each says so."""
import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from artifacts.layout import Run
from study.collect import grid_frame, method_table, table4_from_grid
from study.plan import Plan

ROOT = Path(__file__).resolve().parents[2]


def embedded_config(tmp_path, **grid) -> dict:
    """config/config.yaml as Snakemake validates it (schema defaults filled), results in tmp."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    config["study"]["grid"].update(grid)
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def write_table4(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["model", "method_id", "method", "hp", "searched", "lr", "r", "weight_decay", "score", "note"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


LORA_WINNER = {"model": "smollm2-135m", "method_id": "lora", "method": "LoRA", "hp": "lr=0.001,r=4",
               "searched": "lr,r", "lr": 0.001, "r": 4, "weight_decay": 0.0, "score": 2.21, "note": ""}


def test_a_covered_table_run_takes_the_winner_from_table4(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    table4 = write_table4(tmp_path / "table4.csv", [LORA_WINNER])
    for role in ("flan", "mix"):  # the grid ran on flan; the winner serves every mixture
        run = Run("smollm2-135m", role, "lora")
        assert plan.takes_grid_winner(run)
        assert plan.method_inputs(run) == [str(plan.layout.grid_table())]
        resolved = plan.resolved_method(run, table4)
        assert (resolved["lr"], resolved["r"]) == (0.001, 4)  # the file's default: 2e-4, 16
        assert resolved["lora_alpha"] == 16  # what the search did not vary keeps its default
        source = resolved["setting_source"]
        assert source["summary"] == "lr 0.001, r 4 (grid)"
        assert str(table4) in source["detail"] and "heldout_loss 2.21 (lower is better)" in source["detail"]


def test_the_winner_goes_on_top_of_method_overrides_as_its_grid_point_trained(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    table4 = write_table4(tmp_path / "table4.csv", [
        {**LORA_WINNER, "method_id": "sft-ag", "method": "SFT-AG", "hp": "lr=0.001,r=16"}])
    run = Run("smollm2-135m", "mix", "sft-ag")
    resolved = plan.resolved_method(run, table4)
    point = plan.resolved_method(Run("smollm2-135m", "flan", "sft-ag", "lr=0.001,r=16"))
    drop = ("setting_source",)
    assert {k: v for k, v in resolved.items() if k not in drop} == {k: v for k, v in point.items() if k not in drop}
    assert resolved["reselection_steps"] == 4  # method_overrides.sft-ag
    assert point["setting_source"]["summary"] == "grid point lr=0.001,r=16"


def test_a_table_run_on_the_grid_mixture_is_offered_the_grid_points_to_reuse(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    grid_mixture = plan.study["grid"]["mixture"]
    donors = plan.training_donors(Run("smollm2-135m", grid_mixture, "sft-ag", seed=1))
    assert donors == [str(plan.layout.run_dir(Run("smollm2-135m", grid_mixture, "sft-ag", hp, 1)))
                      for hp in plan.grid_points("sft-ag")] and donors
    other = next(role for role in plan.study["mixtures"] if role != grid_mixture)
    assert plan.training_donors(Run("smollm2-135m", other, "sft-ag")) == []  # other data
    assert plan.training_donors(Run("smollm2-135m", grid_mixture, "ia3")) == []  # not searched
    assert plan.training_donors(Run("smollm2-135m", grid_mixture, "sft-ag", plan.grid_points("sft-ag")[0])) == []
    assert Plan(embedded_config(tmp_path, apply_winners=False)).training_donors(
        Run("smollm2-135m", grid_mixture, "sft-ag")) == []


def test_an_uncovered_method_keeps_its_defaults_and_says_so(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    for method, summary in [("ia3", "method defaults (no grid)"),
                            ("qsft-ag", "method defaults + method_overrides (no grid)"),
                            ("original", "untuned")]:
        run = plan.table_run("smollm2-135m", "mix", method, 0)
        assert not plan.takes_grid_winner(run) and plan.method_inputs(run) == []
        resolved = plan.resolved_method(run)
        assert resolved["setting_source"]["summary"] == summary, method
    assert plan.resolved_method(Run("smollm2-135m", "mix", "ia3"))["lr"] == 3.0e-3  # ia3.yaml


def test_grid_points_and_other_models_do_not_read_table4(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    for hp in plan.grid_points("lora"):
        assert plan.method_inputs(Run("smollm2-135m", "flan", "lora", hp)) == []
    assert plan.method_inputs(Run("gemma3-270m", "mix", "lora")) == []  # not in grid.models


def test_apply_winners_false_trains_the_defaults(tmp_path):
    plan = Plan(embedded_config(tmp_path, apply_winners=False))
    run = Run("smollm2-135m", "mix", "lora")
    assert not plan.takes_grid_winner(run) and plan.method_inputs(run) == []
    resolved = plan.resolved_method(run)
    assert resolved["lr"] == 2.0e-4
    assert resolved["setting_source"]["summary"] == "method defaults (grid winners off)"
    assert "study.grid.apply_winners: false" in resolved["setting_source"]["detail"]


def test_no_winner_falls_back_to_defaults_with_the_reason(tmp_path):
    """Every grid point of LoRA failed: Table 4 has no LoRA row. The run trains the defaults and
    its setting says so (a failure leaves the rest of the table intact, as elsewhere)."""
    plan = Plan(embedded_config(tmp_path))
    table4 = write_table4(tmp_path / "table4.csv", [{**LORA_WINNER, "method_id": "sft-ma", "method": "SFT-MA"}])
    resolved = plan.resolved_method(Run("smollm2-135m", "mix", "lora"), table4)
    assert resolved["lr"] == 2.0e-4
    assert resolved["setting_source"]["summary"] == "method defaults (grid found no winner)"
    assert str(table4) in resolved["setting_source"]["detail"]
    assert "(smollm2-135m, lora)" in resolved["setting_source"]["detail"]


def test_a_covered_run_without_table4_or_with_a_foreign_one_fails_naming_it(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    run = Run("smollm2-135m", "mix", "lora")
    with pytest.raises(ValueError, match="table4.csv"):
        plan.resolved_method(run)
    foreign = tmp_path / "other.csv"
    foreign.write_text("model,method,lr,r,score\nsmollm2-135m,LoRA,0.001,4,2.2\n")
    with pytest.raises(ValueError, match=r"other.csv: not this harness's Table 4: no column \['method_id', 'hp'\]"):
        plan.resolved_method(run, foreign)


def write_grid_point(results: Path, run: Run, method: dict, loss: float | None):
    runs, evals = results / "runs" / run.key, results / "evals" / run.key
    runs.mkdir(parents=True)
    evals.mkdir(parents=True)
    (runs / "method.json").write_text(json.dumps(method))
    if loss is None:
        (evals / "index.json").write_text(json.dumps({"status": "failed", "error": "non-finite loss"}))
        return evals / "index.json"
    (evals / "heldout.json").write_text(json.dumps({"score": loss}))
    (evals / "index.json").write_text(json.dumps({"status": "ok", "benchmarks": {"heldout_loss:flan": "heldout.json"}}))
    return evals / "index.json"


def test_table4_from_grid_points_feeds_the_resolver(tmp_path):
    """The grid's own output (study.collect.table4_from_grid) is what the resolver reads: method id,
    the winning point's tag and its searched values, a budget written as an integer."""
    plan = Plan(embedded_config(tmp_path))
    results = plan.layout.root
    losses = {("lora", "lr=0.0001,r=4"): 3.5, ("lora", "lr=0.001,r=4"): 2.2, ("lora", "lr=0.001,r=16"): 2.3,
              ("ia3", "lr=0.003"): 2.9, ("ia3", "lr=0.01"): None}
    indexes = []
    for (method, hp), loss in losses.items():
        run = Run("smollm2-135m", "flan", method, hp)
        indexes.append(write_grid_point(results, run, plan.resolved_method(run), loss))
    table4_from_grid(plan.layout, indexes, "heldout_loss", plan.layout.grid_table())
    table4 = pd.read_csv(plan.layout.grid_table(), dtype=str, keep_default_na=False).set_index("method_id")
    assert table4.loc["lora", ["method", "hp", "searched", "lr", "r"]].tolist() == ["LoRA", "lr=0.001,r=4", "lr,r", "0.001", "4"]
    assert table4.loc["ia3", ["hp", "r"]].tolist() == ["lr=0.003", ""]  # (IA)3 has no budget
    resolved = plan.resolved_method(Run("smollm2-135m", "single", "lora"), plan.layout.grid_table())
    assert (resolved["lr"], resolved["r"]) == (0.001, 4)


def test_every_grid_point_failed_gives_an_empty_table4(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    run = Run("smollm2-135m", "flan", "lora", "lr=0.001,r=4")
    index = write_grid_point(plan.layout.root, run, plan.resolved_method(run), None)
    table4_from_grid(plan.layout, [index], "heldout_loss", plan.layout.grid_table())
    assert plan.resolved_method(Run("smollm2-135m", "mix", "lora"), plan.layout.grid_table())["setting_source"][
        "summary"] == "method defaults (grid found no winner)"


def test_tables_carry_the_setting_column(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    config = copy.deepcopy(plan.config)
    config["study"]["table1"]["methods"] = ["original", "lora", "ia3", "sift"]
    plan = Plan(config)
    table4 = write_table4(plan.layout.grid_table(), [LORA_WINNER])
    for method in ("original", "lora", "ia3"):  # SIFT: not resolved yet (its notes say why)
        for role in ("flan", "single", "mix"):
            run = plan.table_run("smollm2-135m", role, method, 0)
            path = plan.layout.method_file(run)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(plan.resolved_method(run, table4)))
    table = method_table(plan, "table1", plan.layout.root / "table1.csv",
                         plan.layout.root / "table1_vs_reference.csv").set_index("method_id")
    assert list(table.columns[:3]) == ["model", "method", "setting"]
    assert table.loc["lora", "setting"] == "lr 0.001, r 4 (grid)"
    assert table.loc["ia3", "setting"] == "method defaults (no grid)"
    assert table.loc["original", "setting"] == "untuned"
    assert table.loc["sift", "setting"] == ""
    written = pd.read_csv(plan.layout.root / "table1.csv").set_index("method_id")
    assert written.loc["lora", "setting"] == "lr 0.001, r 4 (grid)"
    assert "lr 0.001, r 4 (grid)" in (plan.layout.root / "table1.md").read_text()


def test_a_row_whose_mixtures_differ_names_each(tmp_path):
    """The paper's 7b FullFT row: trained on Flan v2, the released Tulu 2 model on Tulu v2."""
    from study.collect import run_setting

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config = {**config, **{k: v for k, v in yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()).items()
                           if k not in ("study", "method_overrides")}}
    config["study"] = {**config["study"], "models": ["llama2-7b"]}
    config["results_dir"] = str(tmp_path)
    plan = Plan(config)
    for role in ("flan", "mix"):
        run = plan.table_run("llama2-7b", role, "full", 0)
        plan.layout.method_file(run).parent.mkdir(parents=True)
        plan.layout.method_file(run).write_text(json.dumps(plan.resolved_method(run)))
    pairs = [("flan", "mmlu"), ("mix", "mmlu")]
    assert run_setting(plan, "llama2-7b", "full", pairs) == \
        "flan: method defaults (no grid); mix: released model allenai/tulu-2-7b"


def test_grid_frame_names_each_points_search(tmp_path):
    plan = Plan(embedded_config(tmp_path))
    indexes = []
    for hp, loss in [("lr=0.001,r=4", 2.0), ("weight_decay=0.1", 2.5)]:
        run = Run("smollm2-135m", "flan", "sft-ag", hp)
        indexes.append(write_grid_point(plan.layout.root, run, plan.resolved_method(run), loss))
    frame = grid_frame(plan.layout, indexes, "heldout_loss").set_index("hp")
    assert frame.loc["lr=0.001,r=4", "searched"] == "lr,r"
    assert frame.loc["weight_decay=0.1", "searched"] == "weight_decay"
    assert frame.loc["weight_decay=0.1", "weight_decay"] == 0.1
    assert frame.loc["lr=0.001,r=4", "r"] == 4 and isinstance(frame.loc["lr=0.001,r=4", "r"], int)
