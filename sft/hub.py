"""The Hugging Face Hub, and plain transformers folders: ``user/repo`` as an SFT location, pushing
an SFT, its model card, and exporting a merged standalone model for serving (vLLM, TGI, or
``AutoModelForCausalLM``).

``huggingface_hub`` (a dependency of transformers) and transformers are imported on use.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .format import CONFIG_NAME, REPO_ID, WEIGHTS_NAME



def resolve_sft_dir(path_or_repo: str | os.PathLike, revision: str | None = None,
                    token: str | None = None, cache_dir: str | os.PathLike | None = None,
                    local_files_only: bool = False) -> Path:
    """A local directory as is; otherwise ``path_or_repo`` is a Hub repo id, and its SFT files
    are fetched (or, offline, found in the cache) with ``huggingface_hub.snapshot_download``."""
    path = Path(path_or_repo)
    if path.is_dir():
        return path
    name = str(path_or_repo)
    if not REPO_ID.fullmatch(name):
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
