"""Model preparation and loading: packaged GGUF -> HF folder once, hub ids pass straight through.

A model entry in the config is either `{hub: "meta-llama/Llama-2-7b-hf"}` or
`{gguf: [packaged files, concatenated in order], sha256: "..."}`. GGUF loading costs 20-60 s
(tokenizer conversion), so it is converted once into a normal HF folder under the cache.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch

from artifacts.atomic import atomic_dir, atomic_path
from artifacts.packaged import PackagedFile, fetch, sha256_of


# A model's name is a folder under the cache (and a wildcard in results/ paths): one plain
# component, as the config schema's `models` pattern says, never `..`, a path or a hidden name.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} is not a plain folder name (a letter or digit, then "
                         "letters, digits, '.', '_' or '-'): it names a folder under the cache")
    return name


def _assemble_gguf(name: str, entry: dict, cache_dir: Path) -> Path:
    parts = [fetch(PackagedFile(p["requirement"], p["member"]), cache_dir) for p in entry["gguf"]]
    if len(parts) == 1:
        gguf = parts[0]
    else:
        gguf = cache_dir / "gguf" / f"{name}.gguf"
        if not gguf.exists():
            with atomic_path(gguf) as tmp, open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
    if entry.get("sha256") and sha256_of(gguf) != entry["sha256"]:
        raise RuntimeError(f"model {name!r}: sha256 of {gguf} does not match the config")
    return gguf


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF into an fp32 HF folder (model + tokenizer), written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    # save_pretrained refuses GGUF-loaded models while they still claim to be quantized.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def prepare_model(name: str, entry: dict, cache_dir: Path) -> str:
    """Return what `from_pretrained` should load: a prepared folder, or the hub id unchanged.
    A name that is not a plain folder name is refused before the cache is touched (`..` would
    make the model folder the cache itself, which converting replaces whole)."""
    check_model_name(name)
    if "hub" in entry:
        return entry["hub"]
    out_dir = Path(cache_dir) / "models" / name
    if not (out_dir / "config.json").exists():
        convert_gguf(_assemble_gguf(name, entry, Path(cache_dir)), out_dir)
    return str(out_dir)

