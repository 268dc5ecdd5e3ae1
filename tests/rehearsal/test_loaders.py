"""The harness's hub code paths read the stand-ins when hub_id names their folders.

These call the loaders exactly as config/rehearsal.yaml configures them (source: hub, hub_id:
the folder), and draw the rehearsal's subsets, so a wrong column name, config name or split in a
loader, or too few stand-in items, fails here rather than in the middle of the DAG.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evals.data import manifest_path, prepare_benchmark
from artifacts.jsonl import read_jsonl

REHEARSAL = Path(__file__).resolve().parents[2] / "config" / "rehearsal.yaml"


@pytest.fixture(scope="module")
def rehearsal_cfg():
    return yaml.safe_load(REHEARSAL.read_text())


def merged(*configs):
    """Snakemake's merge of --configfile layers: nested mappings merge, anything else is replaced."""
    out = {}
    for cfg in configs:
        for key, value in cfg.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


@pytest.fixture(scope="module")
def full_cfg(rehearsal_cfg):
    """config.yaml < paper.yaml < rehearsal.yaml, validated (defaults filled) like the DAG's."""
    from snakemake.utils import validate

    root = REHEARSAL.parents[1]
    base, paper = (yaml.safe_load((root / "config" / f).read_text()) for f in ("config.yaml", "paper.yaml"))
    full = merged(base, paper, rehearsal_cfg)
    validate(full, str(root / "workflow" / "schemas" / "config.schema.yaml"))
    return full


def plan_on(full_cfg, standins):
    """The DAG's plan with this session's stand-ins as the mirror."""
    from study.plan import Plan

    return Plan({**full_cfg, "hub_mirror": str(standins)})


def bench_cfg(full_cfg, name, standins):
    """The rehearsal's settings for `name`, hub_id mapped to the mirror as the DAG maps it."""
    return plan_on(full_cfg, standins).bench_config(name)


def test_rehearsal_config_is_the_paper_study_on_stand_ins(rehearsal_cfg, full_cfg, standins):
    root = REHEARSAL.parents[1]
    base, paper = (yaml.safe_load((root / "config" / f).read_text()) for f in ("config.yaml", "paper.yaml"))
    study = merged(base, paper)["study"]
    assert {k: v for k, v in full_cfg["study"].items() if k != "grid"} == {
        k: v for k, v in study.items() if k != "grid"}  # the same study, but a smaller grid
    assert {s["method"] for s in full_cfg["study"]["grid"]["searches"]} == {
        s["method"] for s in study["grid"]["searches"]}
    assert full_cfg["study"]["grid"]["score"] == study["grid"]["score"]
    assert full_cfg["models"] == merged(base, paper)["models"]  # the real hub ids and sizes
    assert full_cfg["hub_standins"] is True and full_cfg["hub_mirror"]
    plan = plan_on(full_cfg, standins)
    for name in full_cfg["study"]["models"]:
        assert plan.model_path(name) == f"{standins}/{full_cfg['models'][name]['hub']}"
    for role in full_cfg["study"]["mixtures"]:
        spec = plan.mixture_spec(role)
        assert spec["source"] == "hub" and spec["hub_id"].startswith(str(standins))
    assert all(plan.bench_config(b)["hub_id"].startswith(str(standins)) for b in full_cfg["evals"])
    for repo in plan.hub_models():
        assert (standins / repo / "config.json").exists(), repo


def test_mmlu(hub, cache_dir):
    from evals import mmlu

    items, shots, origin = mmlu.load({"source": "hub", "hub_id": hub("cais/mmlu")}, cache_dir)
    assert origin["config"] == "all" and len(items) == 16
    assert {i["subject_source"] for i in items} == {"label"}
    assert all(len(shots[i["subject"]]) >= 5 for i in items)  # 5-shot from dev, per subject
    assert {i["answer"] for i in items} <= set("ABCD")


def test_gsm(hub, cache_dir):
    from evals import gsm

    items, shots, _ = gsm.load({"source": "hub", "hub_id": hub("openai/gsm8k")}, cache_dir)
    assert len(items) == 12 and all(i["target"].lstrip("-").isdigit() for i in items)
    assert len(shots) == 8


def test_bbh_all_subtasks(hub, cache_dir):
    from evals import bbh

    items, fewshot, _ = bbh.load({"source": "hub", "hub_id": hub("SaylorTwift/bbh")}, cache_dir)
    assert {i["task"] for i in items} == set(bbh.TASKS) and not fewshot["unavailable"]
    assert set(fewshot["prompts"]) == set(bbh.TASKS)


def test_tydiqa(hub, cache_dir):
    from evals import tydiqa

    items, shots, origin = tydiqa.load(
        {"source": "hub", "hub_id": hub("google-research-datasets/tydiqa")}, cache_dir)
    langs = {i["lang"] for i in items}
    assert len(langs) >= 5 and set(shots) == langs and origin["config"] == "secondary_task"
    assert not {s["id"] for v in shots.values() for s in v} & {i["id"] for i in items}


def test_humaneval(hub, cache_dir):
    from evals import humaneval

    items, _, _ = humaneval.load({"source": "hub", "hub_id": hub("openai/openai_humaneval")},
                                 cache_dir)
    assert [i["task_id"] for i in items] == [f"HumanEval/{k}" for k in range(len(items))]


@pytest.mark.parametrize("name", ["mmlu", "gsm", "bbh", "tydiqa", "humaneval"])
def test_rehearsal_subsets_can_be_drawn(full_cfg, standins, cache_dir, tmp_path, name):
    """prepare_benchmark (the DAG's rule) with config/rehearsal.yaml's evals settings."""
    cfg = bench_cfg(full_cfg, name, standins)
    out = tmp_path / f"{name}.jsonl"
    manifest = prepare_benchmark(name, cfg, cache_dir, out)
    assert "unavailable" not in manifest and manifest["n_items"] > 0
    assert len(read_jsonl(out)) == manifest["n_items"] and manifest_path(out).exists()
    n = cfg.get("n_items")
    if name in ("gsm", "mmlu", "humaneval") and n is not None:
        assert manifest["n_items"] == n < manifest["n_total"]  # a real subset is drawn


@pytest.mark.parametrize("repo_id,n", [("allenai/tulu-v2-sft-mixture", 48),
                                       ("ostapeno/tulu_v2_flan_v2_subset", 48),
                                       ("vicgalle/alpaca-gpt4", 48)])
def test_mixture_hub_rows(hub, repo_id, n):
    from finetune.mixtures.hub import hub_rows

    rows = hub_rows({"source": "hub", "hub_id": hub(repo_id)})
    assert len(rows) == n
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"] for r in rows)
    assert all(r["source"].startswith(hub(repo_id)) for r in rows)


def test_rehearsal_mixtures_build(full_cfg, standins, cache_dir, tmp_path):
    """build_mixture (the DAG's rule, with decontamination) on each rehearsal recipe, then the
    held-out split the DAG makes with the rehearsal's heldout.n_examples."""
    from finetune.heldout import split_heldout
    from finetune.mixtures import build_mixture

    plan = plan_on(full_cfg, standins)
    for role in full_cfg["study"]["mixtures"]:
        name, spec = full_cfg["study"]["mixtures"][role], plan.mixture_spec(role)
        out = tmp_path / f"{name}.jsonl"
        manifest = build_mixture(name, spec, cache_dir, out, catalogue={})
        assert manifest["n_rows"] >= 40, manifest
        n_train, _ = split_heldout(out, tmp_path / f"{name}.train.jsonl",
                                   tmp_path / f"{name}.heldout.jsonl",
                                   full_cfg["heldout"]["n_examples"])
        assert n_train >= 32
