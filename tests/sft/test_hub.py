"""What peft users expect around a saved SFT: metadata and a model card, files others can read,
loading by Hub repo id (offline, from a Hub-layout cache), pushing (the network call replaced at
huggingface_hub's API), and a merged standalone export."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import VOCAB, tiny_llama, token_batch, train_steps
from sft import (SftAdamW, SftConfig, SftModel, SftSelector, __version__, export_merged,
                 get_sft_model, read_metadata)

REPO = Path(__file__).resolve().parents[2]


def _trained(tied=False):
    model = get_sft_model(tiny_llama(tied=tied), SftConfig(num_tunable_weights=3000,
                                                           reselection_steps=2,
                                                           accumulation_steps=1))
    opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, 6)
    train_steps(model, opt, selector, range(3))
    return model


def test_save_pretrained_records_base_version_and_budget(tmp_path):
    model = _trained()
    model.save_pretrained(tmp_path, base_model_name_or_path="HuggingFaceTB/SmolLM2-135M")
    meta = read_metadata(tmp_path)
    targeted = sum(layer.shape[0] * layer.shape[1] for _, layer in model.sft_layers())
    assert meta == {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M",
                    "sft_version": __version__, "tunable_weights": 3000,
                    "targeted_weights": targeted}
    assert SftConfig.load(tmp_path) == model.sft_config  # the metadata is not config
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: spiel-sft\nbase_model: HuggingFaceTB/SmolLM2-135M\n")
    assert "3,000 tunable weights" in card and "SftModel.from_pretrained" in card


def test_base_model_name_comes_from_the_loaded_model(tmp_path):
    base = tiny_llama()
    base.save_pretrained(tmp_path / "base")
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    get_sft_model(loaded, SftConfig(density=0.05)).save_pretrained(tmp_path / "sft")
    assert read_metadata(tmp_path / "sft")["base_model_name_or_path"] == str(tmp_path / "base")
    # a local path is no Hub id: the card names it but declares no `base_model`
    assert "base_model:" not in (tmp_path / "sft" / "README.md").read_text()


def test_an_existing_model_card_is_kept(tmp_path):
    (tmp_path / "README.md").write_text("mine")
    _trained().save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "mine"


def test_written_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        model = _trained()
        model.save_pretrained(tmp_path)
        opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
        SftSelector(model, opt, 6).save(tmp_path)
    finally:
        os.umask(old)
    for name in ("sft_model.safetensors", "sft_config.json", "README.md", "sft_selector.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert not list(tmp_path.glob(".*.tmp"))


def _hub_cache(cache: Path, repo_id: str, folder: Path, revision: str) -> None:
    """The huggingface_hub cache layout: blobs by hash, a snapshot of relative symlinks,
    refs/main naming the revision."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / revision
    (root / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        data = path.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(revision)


OFFLINE_CHILD = """
import socket, sys, torch
def no_network(*args, **kwargs):
    raise OSError("network access in an offline test")
socket.socket.connect = no_network
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from conftest import tiny_llama, token_batch
from sft import SftModel
model = SftModel.from_pretrained(tiny_llama(), "someone/tiny-sft")
with torch.no_grad():
    torch.save(model(input_ids=token_batch(5)).logits, sys.argv[3])
"""


def test_load_by_repo_id_offline_from_the_hub_cache(tmp_path):
    model = _trained()
    model.save_pretrained(tmp_path / "saved")
    with torch.no_grad():
        expected = model(input_ids=token_batch(5)).logits
    _hub_cache(tmp_path / "hub", "someone/tiny-sft", tmp_path / "saved", "a" * 40)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "logits.pt"
    done = subprocess.run([sys.executable, "-c", OFFLINE_CHILD, str(REPO), str(REPO / "tests" / "sft"),
                           str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.equal(torch.load(out), expected)


def test_load_by_repo_id_from_a_given_cache_and_revision(tmp_path):
    model = _trained()
    model.save_pretrained(tmp_path / "saved")
    _hub_cache(tmp_path / "hub", "someone/tiny-sft", tmp_path / "saved", "b" * 40)
    loaded = SftModel.from_pretrained(tiny_llama(), "someone/tiny-sft", cache_dir=tmp_path / "hub",
                                      revision="b" * 40, local_files_only=True)
    for (_, a), (_, b) in zip(model.sft_layers(), loaded.sft_layers()):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(LocalEntryNotFoundError):
        SftModel.from_pretrained(tiny_llama(), "someone/other", cache_dir=tmp_path / "hub",
                                 local_files_only=True)
    with pytest.raises(FileNotFoundError, match="no such SFT directory"):
        SftModel.from_pretrained(tiny_llama(), str(tmp_path / "missing" / "dir"))


def test_push_to_hub_uploads_the_saved_folder(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        calls["upload_folder"] = (repo_id, kwargs, sorted(p.name for p in folder.iterdir()),
                                  json.loads((folder / "sft_config.json").read_text()))
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = _trained()
    result = model.push_to_hub("someone/tiny-sft", private=True, token="hf_test",
                               base_model_name_or_path="HuggingFaceTB/SmolLM2-135M")
    assert result == "commit-info"
    repo_id, kwargs = calls["create_repo"]
    assert repo_id == "someone/tiny-sft" and kwargs["private"] is True and kwargs["exist_ok"]
    repo_id, kwargs, files, config = calls["upload_folder"]
    assert repo_id == "someone/tiny-sft" and kwargs["repo_type"] == "model"
    assert files == ["README.md", "sft_config.json", "sft_model.safetensors"]
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M"


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_export_merged_is_a_standalone_transformers_folder(tmp_path):
    """Weights and tokenizer in one folder that AutoModelForCausalLM (and so vLLM) loads; a tied
    LM head that carries a delta is exported untied."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_sft_model(tiny_llama(tied=True), SftConfig(density=0.05,
                                                           target_modules=["q_proj", "lm_head"]))
    with torch.no_grad():
        for _, layer in model.sft_layers():
            layer.values.normal_(std=0.05)
        expected = model(input_ids=token_batch(4)).logits
    export_merged(model, tmp_path / "merged", tokenizer=_tokenizer())
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=token_batch(4)).logits, expected)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tokenizer("w1 w7 w9")["input_ids"] == [1, 7, 9]
