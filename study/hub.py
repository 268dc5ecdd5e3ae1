"""The hub, touched once: a download rule fetches each model into the hub cache on a machine
with network (HF_HOME, shared by the cluster's nodes), and every compute job then reads it with
the hub offline, so that no GPU job waits on, or fails on, the network."""
from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path

from artifacts.atomic import write_json

# What from_pretrained reads besides the weights: config, tokenizer, index files (*.json).
MODEL_FILES = ["*.json", "*.model", "*.txt", "*.py", "tokenizer*"]
# The weight formats from_pretrained reads, in its order of preference: safetensors where the
# repository has them, else PyTorch pickles (allenai/tulu-2-7b and -13b publish only
# pytorch_model-*.bin shards). transformers loads those with torch.load(weights_only=True),
# which it allows from torch 2.6 on (constraints.txt pins a later torch), so they are fetched
# and loaded as published, not converted.
WEIGHT_FORMATS = (("safetensors", "*.safetensors"), ("pytorch", "pytorch_model*.bin"))


def weight_format(repo_id: str, files: list[str]) -> tuple[str, str]:
    """(format, file pattern) of the weights from_pretrained will read among a repository's
    `files`; an error naming the repository when it has neither format."""
    for name, pattern in WEIGHT_FORMATS:
        if any(fnmatch(Path(f).name, pattern) for f in files):
            return name, pattern
    raise FileNotFoundError(f"{repo_id}: no model weights ({' or '.join(p for _, p in WEIGHT_FORMATS)}) "
                            f"among its files {sorted(files)[:20]}")


def download_model(repo_id: str, marker: Path, mirror: str | None = None) -> dict:
    """Fetch `repo_id` into the hub cache (or, with a mirror, check the mirror holds it) and
    write `marker` saying where it is and which weight format it holds."""
    if mirror:
        path = Path(mirror) / repo_id
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"hub_mirror: {path} has no config.json (is the mirror written?)")
        fmt, _ = weight_format(str(path), [p.name for p in path.iterdir()])
        record = {"repo_id": repo_id, "path": str(path), "source": "mirror", "weights": fmt}
    else:
        from huggingface_hub import list_repo_files, snapshot_download

        fmt, pattern = weight_format(repo_id, list_repo_files(repo_id))
        path = snapshot_download(repo_id, allow_patterns=[*MODEL_FILES, pattern])
        record = {"repo_id": repo_id, "path": path, "source": "hub", "weights": fmt,
                  "revision": Path(path).name, "hf_home": os.environ.get("HF_HOME")}
    write_json(marker, record, indent=2)
    return record


def hub_offline() -> None:
    """From here on this process (and its children) read the hub cache only. Call it before
    transformers or datasets are imported: they read these variables once."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
