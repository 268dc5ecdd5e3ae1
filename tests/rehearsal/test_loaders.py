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
from evals.io import read_jsonl

REHEARSAL = Path(__file__).resolve().parents[2] / "config" / "rehearsal.yaml"


@pytest.fixture(scope="module")
def rehearsal_cfg():
    return yaml.safe_load(REHEARSAL.read_text())


STANDINS = ".cache/rehearsal/"


def here(hub, hub_id):
    """A rehearsal hub_id (a folder under .cache/rehearsal/hub/) -> this session's stand-in."""
    assert hub_id.startswith(STANDINS + "hub/"), hub_id
    return hub(hub_id[len(STANDINS + "hub/"):])


def bench_cfg(rehearsal_cfg, name, hub):
    """The rehearsal's settings for `name`, with hub_id pointing at this session's stand-ins."""
    cfg = dict(rehearsal_cfg["evals"][name])
    assert cfg["source"] == "hub"
    return {**cfg, "hub_id": here(hub, cfg["hub_id"])}


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


def test_rehearsal_config_is_the_paper_study_on_stand_ins(rehearsal_cfg):
    import jsonschema

    root = REHEARSAL.parents[1]
    base, paper = (yaml.safe_load((root / "config" / f).read_text())
                   for f in ("config.yaml", "paper.yaml"))
    full = merged(base, paper, rehearsal_cfg)
    schema = yaml.safe_load((root / "workflow" / "schemas" / "config.schema.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(full)
    assert full["study"] == merged(base, paper)["study"]  # the same study, untouched
    for name in full["study"]["models"]:
        assert full["models"][name]["hub"] == STANDINS + "model"
        assert full["models"][name]["size"] == merged(base, paper)["models"][name]["size"]
    for role, name in full["study"]["mixtures"].items():
        assert full["mixtures"][name]["source"] == "hub"
        assert full["mixtures"][name]["hub_id"].startswith(STANDINS + "hub/")
    assert all(full["evals"][b]["hub_id"].startswith(STANDINS + "hub/") for b in full["evals"])


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

    items, fewshot, _ = bbh.load({"source": "hub", "hub_id": hub("lukaemon/bbh")}, cache_dir)
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
def test_rehearsal_subsets_can_be_drawn(rehearsal_cfg, hub, cache_dir, tmp_path, name):
    """prepare_benchmark (the DAG's rule) with config/rehearsal.yaml's evals settings."""
    cfg = bench_cfg(rehearsal_cfg, name, hub)
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
    assert all(r["prompt"] and r["response"] for r in rows)
    assert all(r["source"].startswith(hub(repo_id)) for r in rows)


def test_rehearsal_mixtures_build(rehearsal_cfg, hub, cache_dir, tmp_path):
    """build_mixture (the DAG's rule, with decontamination) on each rehearsal recipe, then the
    held-out split the DAG makes with the rehearsal's heldout.n_examples."""
    from finetune.heldout import split_heldout
    from finetune.mixtures import build_mixture

    for name, spec in rehearsal_cfg["mixtures"].items():
        spec = {"source": "hub", **spec, "hub_id": here(hub, spec["hub_id"])}
        out = tmp_path / f"{name}.jsonl"
        manifest = build_mixture(name, spec, cache_dir, out, catalogue={})
        assert manifest["n_rows"] >= 40, manifest
        n_train, _ = split_heldout(out, tmp_path / f"{name}.train.jsonl",
                                   tmp_path / f"{name}.heldout.jsonl",
                                   rehearsal_cfg["heldout"]["n_examples"])
        assert n_train >= 32
