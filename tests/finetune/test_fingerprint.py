"""A run's fingerprint is keyed by the content of what it trains on: a hub model by the commit
the hub cache holds, a data file by its content."""
import json

from finetune.fingerprint import run_fingerprint

METHOD = {"name": "lora", "builder": "lora"}


def _hub_cache(root, repo_id, commit):
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_model_is_keyed_by_its_cached_commit(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("SFT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "mix.jsonl"
    data.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    _hub_cache(tmp_path / "hub", "org/tiny", "a" * 40)
    first = run_fingerprint("org/tiny", data, METHOD, {}, 0)
    assert first["model"]["revision"] == "a" * 40
    _hub_cache(tmp_path / "hub", "org/tiny", "b" * 40)  # a new revision downloaded
    assert run_fingerprint("org/tiny", data, METHOD, {}, 0)["sha256"] != first["sha256"]


def test_a_data_file_rewritten_with_the_same_size_changes_the_fingerprint(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "mix.jsonl"
    data.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    first = run_fingerprint(tiny_model_dir, data, METHOD, {}, 0)
    data.write_text(json.dumps({"prompt": "a", "response": "c"}) + "\n")
    assert run_fingerprint(tiny_model_dir, data, METHOD, {}, 0)["sha256"] != first["sha256"]
