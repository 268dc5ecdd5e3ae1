"""Tiny offline stand-ins for the paper profile's hub models and datasets (config/rehearsal.yaml).

`python -m rehearsal MIRROR` writes a folder laid out like the hub, MIRROR/<owner>/<name>/, for
every repository the paper profile reads: the models (a tiny Llama-2-architecture model with a
SentencePiece tokenizer, in Llama-2's folder layout, standing in for meta-llama/Llama-2-7b-hf and
-13b-hf and for the released allenai/tulu-2-7b and -13b, whose weights are stored as those
repositories store theirs, .bin shards only) and the datasets (their configs, splits and
columns, made-up rows). With `hub_mirror: MIRROR` the study reads every hub id there,
through the same loaders as the hub (`from_pretrained`, `datasets.load_dataset(id, config,
split)`), so that the paper profile's code paths run in CI with nothing else changed.
See rehearsal.model and rehearsal.hub_data for what each stand-in matches.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from artifacts.atomic import atomic_dir, write_json

MODEL_IDS = ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "allenai/tulu-2-7b",
             "allenai/tulu-2-13b")
# The released Tulu 2 models publish PyTorch .bin shards only (no safetensors), and so do
# their stand-ins.
BIN_ONLY_IDS = ("allenai/tulu-2-7b", "allenai/tulu-2-13b")
HUB_IDS = ("allenai/tulu-v2-sft-mixture", "ostapeno/tulu_v2_flan_v2_subset", "vicgalle/alpaca-gpt4",
           "cais/mmlu", "openai/gsm8k", "SaylorTwift/bbh", "google-research-datasets/tydiqa",
           "openai/openai_humaneval")
COMPLETE = ".complete"  # written last: the DAG's mark that the whole mirror is there


def fingerprint(seed: int) -> str:
    """What the built files depend on: this package's sources and the seed."""
    digest = hashlib.sha256(f"seed={seed}\n".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def is_built(mirror: Path, seed: int = 0) -> bool:
    try:
        return json.loads((Path(mirror) / COMPLETE).read_text())["fingerprint"] == fingerprint(seed)
    except (OSError, ValueError, KeyError):
        return False


def build_all(mirror: Path, seed: int = 0, force: bool = False) -> Path:
    """Write every stand-in under `mirror`, the whole folder at once; skipped when it already
    holds a build of these sources and seed."""
    from rehearsal.hub_data import write_hub_standins
    from rehearsal.model import as_pytorch_shards, build_llama

    mirror = Path(mirror)
    if not force and is_built(mirror, seed):
        return mirror
    with atomic_dir(mirror) as tmp:
        model = build_llama(tmp / MODEL_IDS[0], seed)
        for repo in MODEL_IDS[1:]:  # the same tiny model answers for every model id
            shutil.copytree(model, tmp / repo)
            if repo in BIN_ONLY_IDS:
                as_pytorch_shards(tmp / repo)
        written = write_hub_standins(tmp, seed)
        write_json(tmp / COMPLETE, {"fingerprint": fingerprint(seed), "seed": seed,
                                    "models": list(MODEL_IDS), "datasets": sorted(written)}, indent=2)
    return mirror
