"""Tiny offline stand-ins for the paper profile's hub model and datasets (config/rehearsal.yaml).

`python -m rehearsal OUT_DIR` writes
  OUT_DIR/model/                  a tiny Llama-2-architecture model with a SentencePiece tokenizer
  OUT_DIR/hub/<owner>/<name>/     one folder per hub dataset, in the hub repository's layout
so that the paper profile's study runs end to end with the hub ids swapped for these folders and
nothing else changed. See rehearsal.model and rehearsal.hub_data for what each stand-in matches.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

HUB_IDS = ("allenai/tulu-v2-sft-mixture", "ostapeno/tulu_v2_flan_v2_subset", "vicgalle/alpaca-gpt4",
           "cais/mmlu", "openai/gsm8k", "lukaemon/bbh", "google-research-datasets/tydiqa",
           "openai/openai_humaneval")
STAMP = "rehearsal.json"


def fingerprint(seed: int) -> str:
    """What the built files depend on: this package's sources and the seed."""
    digest = hashlib.sha256(f"seed={seed}\n".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def is_built(out_dir: Path, seed: int = 0) -> bool:
    stamp = Path(out_dir) / STAMP
    try:
        return json.loads(stamp.read_text())["fingerprint"] == fingerprint(seed)
    except (OSError, ValueError, KeyError):
        return False


def build_all(out_dir: Path, seed: int = 0, force: bool = False) -> Path:
    """Write OUT_DIR/model and OUT_DIR/hub/... (all of it at once: built beside OUT_DIR, then
    renamed into place). Skipped when OUT_DIR already holds a build of these sources and seed."""
    from rehearsal.hub_data import write_hub_standins
    from rehearsal.model import build_llama

    out_dir = Path(out_dir)
    if not force and is_built(out_dir, seed):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build_llama(tmp / "model", seed)
        written = write_hub_standins(tmp / "hub", seed)
        stamp = {"fingerprint": fingerprint(seed), "seed": seed, "model": "model",
                 "hub": {repo: str(path.relative_to(tmp)) for repo, path in written.items()}}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir
