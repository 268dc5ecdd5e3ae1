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


# ------------------------------------------------------------------ the instruction mixtures

def test_tulu_v2_trains_on_whole_conversations_with_system_messages(hub, tmp_path):
    """326k rows of multi-turn conversations (ShareGPT's 114k, open_orca's system messages):
    every turn of every conversation reaches the mixture, and training, as the reference's
    encode_with_messages_format."""
    import datasets
    from transformers import AutoTokenizer

    from finetune.mixtures import build_mixture, read_rows
    from finetune.train import encode_mixture

    raw = datasets.load_dataset(hub("allenai/tulu-v2-sft-mixture"), split="train")
    assert any(r["messages"][0]["role"] == "system" for r in raw if r["dataset"] == "open_orca")
    assert all(sum(m["role"] == "assistant" for m in r["messages"]) > 1
               for r in raw if r["dataset"] == "sharegpt")
    out = tmp_path / "tulu.jsonl"
    manifest = build_mixture("tulu", {"source": "hub", "hub_id": hub("allenai/tulu-v2-sft-mixture"),
                                      "decontaminate": False}, tmp_path, out)
    rows = read_rows(out)
    assert sorted(len(r["messages"]) for r in rows) == sorted(len(r["messages"]) for r in raw)
    conv = manifest["conversations"]
    assert conv["turns"]["assistant"] == sum(m["role"] == "assistant" for r in raw for m in r["messages"])
    assert conv["with_system"] == sum(r["messages"][0]["role"] == "system" for r in raw) > 0
    assert conv["multi_turn"] >= sum(r["dataset"] == "sharegpt" for r in raw) > 0
    tokenizer = AutoTokenizer.from_pretrained(hub("meta-llama/Llama-2-7b-hf"))
    _, counts = encode_mixture(tokenizer, out, 128)
    assert counts["turns"] == conv["turns"]["assistant"]
    assert counts["tokens"] == counts["tokens_kept"] + counts["tokens_cut"]
    _, short = encode_mixture(tokenizer, out, 40)
    assert short["turns_cut"] > 0 and short["tokens_cut"] > counts["tokens_cut"]


def test_gpt4_alpaca_prompts_are_the_references_templates(hub, tmp_path):
    """vicgalle/alpaca-gpt4 (instruction, input, output, text): the reference encodes each
    example through a template drawn per example (instruction_encode_templates)."""
    import datasets

    from finetune.mixtures import build_mixture, read_rows
    from finetune.mixtures.alpaca import WITH_INPUT, WITHOUT_INPUT

    repo = hub("vicgalle/alpaca-gpt4")
    raw = list(datasets.load_dataset(repo, split="train"))
    out = tmp_path / "alpaca.jsonl"
    build_mixture("alpaca", {"source": "hub", "hub_id": repo, "decontaminate": False}, tmp_path, out)
    used = set()
    for row in read_rows(out):
        user, reply = (m["content"] for m in row["messages"])
        matches = set()
        for src in raw:
            table = WITH_INPUT if src["input"].strip() else WITHOUT_INPUT
            fields = {"instruction": src["instruction"].strip(), "input": src["input"].strip()}
            matches |= {(table is WITH_INPUT, i) for i, (p, c, _) in enumerate(table)
                        if p.format(**fields) == user and c.format(output=src["output"].strip()) == reply}
        assert matches, user
        used |= matches
    assert len(used) > 3  # drawn per example, not one fixed format


def test_flan_v2_prompt_completion_layout_is_accepted_and_others_are_named(tmp_path):
    """The reference's finetune.py reads `messages` or `prompt` + `completion`; the Flan v2
    subset's schema is not published, so both are accepted; any other layout fails naming the
    dataset and its columns."""
    from finetune.mixtures import build_mixture, read_rows

    src = tmp_path / "flan_v2.jsonl"
    src.write_text(json.dumps({"prompt": "Translate to French: cat\n", "completion": "chat"}) + "\n")
    out = tmp_path / "flan.jsonl"
    build_mixture("flan", {"source": "path", "path": str(src), "decontaminate": False}, tmp_path, out)
    (row,) = read_rows(out)
    assert row["template"] == "plain" and [m["content"] for m in row["messages"]] == [
        "Translate to French: cat\n", "chat"]
    bad = tmp_path / "odd.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"odd\.jsonl:1: .*columns \['answer', 'question'\]"):
        build_mixture("odd", {"source": "path", "path": str(bad)}, tmp_path, tmp_path / "o.jsonl")


# ------------------------------------------------------------------ TyDiQA

def test_tydiqa_text_is_read_as_published(monkeypatch, cache_dir):
    """The reference reads GoldP's raw JSON: passages and questions unstripped."""
    from evals import tydiqa

    def rows(hub_id, config, split, revision=None):
        return [{"id": f"{lang}-{split}-{k}", "title": "t", "context": f" Passage {k} about {lang}.\n",
                 "question": f"What about {lang}? ", "answers": {"text": [f"{lang}"], "answer_start": [19]}}
                for lang in ("english", "finnish") for k in range(3)]

    monkeypatch.setattr(tydiqa, "hub_rows", rows)
    items, shots, _ = tydiqa.load({"source": "hub", "n_per_language": 2}, cache_dir)
    assert items and all(i["context"].startswith(" Passage") and i["context"].endswith(".\n")
                         for i in items)
    assert all(i["question"].endswith("? ") for i in items)
