"""The hub's layouts as published (HUB-FACTS in the docs: dataset cards, lm-eval, open-instruct),
one test per fact: the stand-ins copy each layout, and the harness reads it as the reference does."""
from __future__ import annotations

import json
import re

import pytest
import torch


# ------------------------------------------------------------------ BBH

def test_bbh_reads_lm_evals_copy_per_subtask_at_a_pinned_commit(hub, standins, cache_dir):
    """lukaemon/bbh does not load per subtask with datasets 5 (a loading script on main, no
    configs on its parquet branch); lm-eval 0.4.13 reads SaylorTwift/bbh, one config per
    subtask at <task>/test-*.parquet."""
    import datasets

    from evals import bbh

    assert bbh.HUB_ID == "SaylorTwift/bbh" and re.fullmatch(r"[0-9a-f]{40}", bbh.HUB_REVISION)
    folder = hub(bbh.HUB_ID)
    assert sorted(datasets.get_dataset_config_names(folder)) == sorted(bbh.TASKS)
    for task in bbh.TASKS:
        assert [p.name for p in (standins / bbh.HUB_ID / task).iterdir()] == ["test-00000-of-00001.parquet"]
    items, fewshot, origin = bbh.load({"source": "hub", "hub_id": folder}, cache_dir)
    assert {i["task"] for i in items} == set(bbh.TASKS) and origin["revision"] == bbh.HUB_REVISION


# ------------------------------------------------------------------ the released Tulu 2 models

@pytest.mark.parametrize("repo", ["allenai/tulu-2-7b", "allenai/tulu-2-13b"])
def test_tulu2_standins_hold_bin_shards_only(standins, repo):
    names = {p.name for p in (standins / repo).iterdir()}
    assert not [n for n in names if n.endswith(".safetensors")]
    assert {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
            "pytorch_model.bin.index.json", "config.json", "tokenizer.model"} <= names


def test_download_fetches_bin_shards_when_a_repo_has_no_safetensors(monkeypatch, tmp_path, standins):
    """The hub path: the file list decides the patterns (allenai/tulu-2-7b's files, as published)."""
    import huggingface_hub

    from study import hub

    tulu = ["README.md", "config.json", "generation_config.json", "pytorch_model-00001-of-00002.bin",
            "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json",
            "special_tokens_map.json", "tokenizer.model", "tokenizer_config.json"]
    llama = [*tulu, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    fetched = {}

    def snapshot_download(repo_id, allow_patterns):
        fetched[repo_id] = allow_patterns
        return str(tmp_path / "snapshots" / "abc123")

    monkeypatch.setattr(huggingface_hub, "list_repo_files",
                        lambda repo_id: tulu if "tulu" in repo_id else llama)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    record = hub.download_model("allenai/tulu-2-7b", tmp_path / "tulu.json")
    assert record["weights"] == "pytorch" and "pytorch_model*.bin" in fetched["allenai/tulu-2-7b"]
    hub.download_model("meta-llama/Llama-2-7b-hf", tmp_path / "llama.json")
    assert "*.safetensors" in fetched["meta-llama/Llama-2-7b-hf"]
    assert not any(p.endswith(".bin") for p in fetched["meta-llama/Llama-2-7b-hf"])
    with pytest.raises(FileNotFoundError, match="org/empty: no model weights"):
        hub.weight_format("org/empty", ["config.json", "README.md"])
    # the mirror's folder, laid out like the hub repository
    record = hub.download_model("allenai/tulu-2-7b", tmp_path / "m.json", mirror=str(standins))
    assert record["weights"] == "pytorch"


def test_released_tulu2_evaluates_from_its_bin_shards(standins):
    """Evaluation loads the .bin shards (transformers: torch.load with weights_only=True) to
    the same weights as the safetensors model they were written from."""
    from baselines.loading import load_base

    tulu = load_base(str(standins / "allenai/tulu-2-7b"), torch.float32)
    llama = load_base(str(standins / "meta-llama/Llama-2-7b-hf"), torch.float32)
    for (name, a), (_, b) in zip(tulu.state_dict().items(), llama.state_dict().items()):
        assert torch.equal(a, b), name
    index = json.loads((standins / "allenai/tulu-2-7b/pytorch_model.bin.index.json").read_text())
    assert set(index["weight_map"]) == set(llama.state_dict())
