"""The Hugging Face Hub, and plain transformers folders: ``user/repo`` as an SFT location, pushing
an SFT, its model card, and exporting a merged standalone model for serving (vLLM, TGI, or
``AutoModelForCausalLM``).

``huggingface_hub`` (a dependency of transformers) and transformers are imported on use.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .config import CONFIG_NAME, SftConfig
from .model import WEIGHTS_NAME
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def resolve_sft_dir(path_or_repo: str | os.PathLike, revision: str | None = None,
                    token: str | None = None, cache_dir: str | os.PathLike | None = None,
                    local_files_only: bool = False) -> Path:
    """A local directory as is; otherwise ``path_or_repo`` is a Hub repo id, and its SFT files
    are fetched (or, offline, found in the cache) with ``huggingface_hub.snapshot_download``."""
    path = Path(path_or_repo)
    if path.is_dir():
        return path
    name = str(path_or_repo)
    if not _REPO_ID.fullmatch(name):
        raise FileNotFoundError(f"{name}: no such SFT directory (and not a Hub repo id)")
    from huggingface_hub import snapshot_download

    folder = snapshot_download(repo_id=name, revision=revision, token=token,
                               cache_dir=None if cache_dir is None else str(cache_dir),
                               local_files_only=local_files_only,
                               allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    return Path(folder)


def push_to_hub(sft_model, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload sparse fine-tuning",
                create_pr: bool = False, base_model_name_or_path: str | None = None):
    """``sft_model.save_pretrained`` into a temporary folder, then ``HfApi.create_repo``
    (``exist_ok``) and ``HfApi.upload_folder``; returns the commit info."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    target = getattr(repo, "repo_id", None) or repo_id
    with tempfile.TemporaryDirectory() as folder:
        sft_model.save_pretrained(folder, base_model_name_or_path=base_model_name_or_path)
        return api.upload_folder(repo_id=target, folder_path=folder, repo_type="model",
                                 commit_message=commit_message, revision=revision,
                                 create_pr=create_pr)


def _hub_id(name: str | None) -> str | None:
    """``name`` if it reads as a Hub model id, not as a local path."""
    if not name or os.path.isabs(name) or name.startswith((".", "~")) or Path(name).exists():
        return None
    return name if _REPO_ID.fullmatch(name) else None


def model_card_text(config: SftConfig, metadata: dict) -> str:
    """A short Hub model card (``README.md``) for a saved SFT."""
    base = metadata.get("base_model_name_or_path")
    hub_base = _hub_id(base)
    front = ["---", "library_name: spiel-sft"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front += ["tags:", "- sparse-fine-tuning", "- spiel", "---", ""]
    tunable, targeted = metadata.get("tunable_weights"), metadata.get("targeted_weights")
    budget = (f"{tunable:,d} tunable weights ({100 * tunable / targeted:.3f}% of the "
              f"{targeted:,d} weights of the targeted matrices)" if tunable and targeted else "")
    method = "SFT-AG (accumulated gradients)" if config.selection == "ag" else \
        "SFT-MA (momentum approximation, SM3)"
    load_base = f'AutoModelForCausalLM.from_pretrained("{hub_base or base or "<base model>"}")'
    body = [
        f"# Sparse fine-tuning of {base or 'a base model'}",
        "",
        "A sparse delta over the base model's weights, trained with SpIEL "
        "(Ansell et al., 2024, *Scaling Sparse Fine-Tuning to Large Language Models*): "
        f"{method}, {budget or 'see sft_config.json for the budget'}. "
        f"Written by spiel-sft {metadata.get('sft_version', '')}.".replace(" .", "."),
        "",
        "```python",
        "from transformers import AutoModelForCausalLM",
        "from sft import SftModel",
        "",
        f"model = SftModel.from_pretrained({load_base}, \"<this repo or folder>\")",
        "merged = model.merge_and_unload()  # a plain transformers model",
        "```",
        "",
        "Files: `sft_model.safetensors` (per matrix: flat indices, values, the reselection at "
        "which each entry was grown, and the shape) and `sft_config.json` (hyperparameters, "
        "base model, library version and budget).",
        "",
    ]
    return "\n".join(front + body)


def export_merged(sft_model, directory: str | os.PathLike, tokenizer=None,
                  max_shard_size: str | int = "5GB") -> Path:
    """Merge the deltas into the base (``merge_and_unload``; the ``SftModel`` is used up) and
    write a standalone transformers folder: config, safetensors weights and, if given, the
    tokenizer (an object with ``save_pretrained``, or a name/path for ``AutoTokenizer``).
    vLLM, TGI or ``AutoModelForCausalLM.from_pretrained(directory)`` load it as any model.

    A 4-bit base would be written re-quantized; load the base in 16 bit instead
    (``SftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base,
    dtype=torch.bfloat16), sft_dir)``) and export that."""
    from .base_weights import is_4bit

    if any(is_4bit(layer.base_layer) for _, layer in sft_model.sft_layers()):
        raise ValueError("export_merged: this SftModel sits on a 4-bit base; load the base in "
                         "16-bit, apply the SFT with SftModel.from_pretrained, then export")
    if not hasattr(sft_model.base_model, "save_pretrained"):
        raise TypeError("export_merged writes a transformers folder: the base model must be a "
                        f"transformers PreTrainedModel, not {type(sft_model.base_model).__name__}")
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    directory = Path(directory)
    merged = sft_model.merge_and_unload()
    merged.save_pretrained(directory, max_shard_size=max_shard_size)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory
