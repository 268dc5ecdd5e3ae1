"""The DAG plans answer-likelihood columns ("<bench>_bpb"): which evaluations a run gets, which
prepared items each reads, and the config each is given."""
import yaml
from snakemake.utils import validate
from test_dag import ROOT, dry_run, job_counts

from study.plan import Plan


def plan(**evals) -> Plan:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for bench, cfg in evals.items():
        config["evals"][bench] = cfg
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return Plan(config)


def test_a_bpb_column_is_an_evaluation_of_its_mixtures_runs_and_of_the_untuned_model():
    p = plan()
    assert p.evaluations_for("mix")[0] == ["mmlu", "gsm", "bbh", "tydiqa", "humaneval", "mmlu_bpb",
                                           "gsm_bpb", "bbh_bpb", "humaneval_bpb"]
    assert p.evaluations_for("single")[0] == ["humaneval", "humaneval_bpb"]
    assert "mmlu_bpb" in p.evaluations_for("none")[0]
    assert p.evaluations_for("flan", "lr=0.001,r=4") == ([], ["flan"])  # the grid: its dev score


def test_a_run_is_scored_on_the_columns_of_its_own_tables():
    """Table 2 asks the Flan-style held-out loss; Table 1's methods are not scored on it."""
    p = plan()
    assert ("flan", "heldout_loss") in p.planned_columns("table2")
    assert ("flan", "heldout_loss") not in p.planned_columns("table1")
    assert p.evaluations_for("flan", method="lora") == (["mmlu", "tydiqa", "mmlu_bpb"], [])
    assert p.evaluations_for("flan", method="qlora")[1] == ["flan"]
    assert p.evaluations_for("none", method="original")[1] == ["mix"]
    assert p.evaluations_for("none", method="original-4bit")[1] == ["flan"]
    assert p.evaluations_for("flan", "lr=0.001,r=4", "lora") == ([], ["flan"])


def test_bpb_items_prepare_their_own_file_else_the_accuracy_items_are_read():
    p = plan(gsm={"source": "packaged", "n_items": 5, "bpb_items": 100},
             bbh={"source": "packaged", "n_per_task": 1, "bpb_items": 10},
             humaneval={"source": "packaged", "n_items": 4})
    data = p.eval_data("mix", "default")
    assert data["gsm_bpb"] == "results/data/evals/gsm.bpb.jsonl"
    assert data["gsm"] == "results/data/evals/gsm.jsonl"
    assert data["humaneval_bpb"] == data["humaneval"] == "results/data/evals/humaneval.jsonl"
    assert p.bpb_items("gsm") == {"n_items": 100} and p.bpb_items("bbh") == {"n_per_task": 10}
    assert p.bpb_items("humaneval") is None
    settings = p.eval_settings("mix", "default")
    # the accuracy config, unchanged by bpb_items (its prepared items and its runs do not rerun)
    assert settings["gsm_bpb"] == settings["gsm"] == {"source": "packaged", "n_items": 5}


def test_the_embedded_default_prepares_the_bpb_items_it_asks_for():
    proc = dry_run("results/table1.csv")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["prepare_benchmark"] == 5  # every benchmark of the mixture column
    assert counts["prepare_benchmark_bpb"] == 4  # MMLU, GSM, BBH, HumanEval (no TyDiQA offline)


def test_a_bpb_column_the_schema_does_not_know_fails_the_dry_run(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study:\n  table1:\n    columns: {mix: [gsm_bbp]}\n")
    proc = dry_run(f"--configfile={bad}", "results/table1.csv")
    assert proc.returncode != 0 and "gsm_bbp" in proc.stdout + proc.stderr
