"""The hub, touched once: a download rule fetches each model into the hub cache on a machine
with network (HF_HOME, shared by the cluster's nodes), and every compute job then reads it with
the hub offline, so that no GPU job waits on, or fails on, the network."""
from __future__ import annotations

import os
from pathlib import Path

from artifacts.atomic import write_json

# What from_pretrained reads: config, weights, tokenizer (not the repository's other formats).
MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "tokenizer*"]


def download_model(repo_id: str, marker: Path, mirror: str | None = None) -> dict:
    """Fetch `repo_id` into the hub cache (or, with a mirror, check the mirror holds it) and
    write `marker` saying where it is."""
    if mirror:
        path = Path(mirror) / repo_id
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"hub_mirror: {path} has no config.json (is the mirror written?)")
        record = {"repo_id": repo_id, "path": str(path), "source": "mirror"}
    else:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, allow_patterns=MODEL_FILES)
        record = {"repo_id": repo_id, "path": path, "source": "hub",
                  "revision": Path(path).name, "hf_home": os.environ.get("HF_HOME")}
    write_json(marker, record, indent=2)
    return record


def hub_offline() -> None:
    """From here on this process (and its children) read the hub cache only. Call it before
    transformers or datasets are imported: they read these variables once."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
