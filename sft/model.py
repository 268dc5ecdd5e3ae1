"""`SftModel`: a base model whose targeted linear layers carry sparse deltas.

It forwards calls (and unknown attributes, e.g. ``generate``, ``config``) to the base model,
freezes every base parameter, and saves / loads only the deltas (indices, values, and the
iteration each index was last grown) as safetensors plus the ``SftConfig`` JSON.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .base_weights import dense_weight, is_4bit, replace_weight
from . import hub
from .config import SftConfig, read_metadata
from .format import (CONFIG_NAME, WEIGHTS_NAME, check_same_base, compose_deltas, model_card_text,
                     read_deltas, write_deltas)
from .io import atomic_write_text
from .layer import SftLinear
from .targets import allocate_budget, find_target_linears, weight_shape
from .version import __version__



def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def _logical_numel(param: Tensor) -> int:
    """Parameters a tensor stands for: a packed 4-bit weight holds two per byte."""
    if type(param).__name__ == "Params4bit":
        return param.numel() * 2
    return param.numel()


def _shared_parameter_ids(model: nn.Module) -> set[int]:
    """Parameters that more than one module holds (tied weights, e.g. an LM head tied to the
    input embedding)."""
    counts: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        counts[id(param)] = counts.get(id(param), 0) + 1
    return {key for key, count in counts.items() if count > 1}


def _untie_word_embeddings(model: nn.Module) -> None:
    """Record in a transformers config that input and output embeddings are no longer tied, so
    that saving and loading the merged model does not tie them again."""
    config = getattr(model, "config", None)
    if config is None:
        return
    configs = [config]
    if hasattr(config, "get_text_config"):
        configs.append(config.get_text_config())
    for cfg in configs:
        if getattr(cfg, "tie_word_embeddings", False):
            cfg.tie_word_embeddings = False


def _call_base_model(self, *args, **kwargs):
    return self.base_model(*args, **kwargs)


class _BaseModelForward:
    """``SftModel.forward``: calls the base model; on an instance it carries the base model's
    ``forward`` signature, which transformers.Trainer inspects to decide which dataset
    columns to keep (on the class it is a plain function, which Trainer inspects too)."""

    def __get__(self, instance, owner=None):
        if instance is None:
            return _call_base_model
        base = instance.base_model

        @functools.wraps(base.forward)
        def forward(*args, **kwargs):
            return base(*args, **kwargs)

        return forward


class SftModel(nn.Module):
    """Use :func:`get_sft_model` to create one, :meth:`from_pretrained` to load one."""

    def __init__(self, model: nn.Module, config: SftConfig,
                 deltas: dict[str, tuple[Tensor, Tensor, Tensor]] | None = None,
                 trainable: bool = True):
        super().__init__()
        if any(isinstance(m, SftLinear) for m in model.modules()):
            raise ValueError("this model already carries sparse deltas; unload() or "
                             "merge_and_unload() the previous SftModel first")
        self.base_model = model
        self.sft_config = config
        self.num_reselections = 0
        for param in model.parameters():
            param.requires_grad_(False)
        if deltas is None:
            self._add_random_deltas(config)
        else:
            self._add_given_deltas(deltas)
        for _, layer in self.sft_layers():
            layer.values.requires_grad_(trainable)
        # Every rank holds the same index sets by construction (one seed; sft.distributed makes
        # the selection identical), so DistributedDataParallel need not broadcast them at start
        # and before every forward (4-6 bytes per tuned entry each time); NCCL and gloo cannot
        # broadcast the int16 grown_at at all. DDP reads this attribute (names inside this module).
        self._ddp_params_and_buffers_to_ignore = [
            f"base_model.{name}.{field}" for name, _ in self.sft_layers()
            for field in ("indices", "grown_at")]

    def _add_random_deltas(self, config: SftConfig) -> None:
        targets = list(find_target_linears(self.base_model, config.target_modules))
        sizes = [d_out * d_in for _, lin in targets for d_out, d_in in [weight_shape(lin)]]
        counts = allocate_budget(sizes, config.density, config.num_tunable_weights)
        generator = torch.Generator().manual_seed(config.seed)  # same sets on every rank
        for (name, linear), count in zip(targets, counts):
            layer = SftLinear.with_random_indices(linear, count, config.torch_delta_dtype, generator)
            _set_submodule(self.base_model, name, layer)

    def _add_given_deltas(self, deltas: dict[str, tuple[Tensor, Tensor, Tensor]]) -> None:
        for name, (indices, values, grown_at) in deltas.items():
            _set_submodule(self.base_model, name,
                           SftLinear(self.base_model.get_submodule(name), indices, values, grown_at))

    forward = _BaseModelForward()

    @property
    def _hf_peft_config_loaded(self) -> bool:
        """transformers.Trainer trains a 4-bit model only with trainable adapters, as the deltas are."""
        return any(layer.values.requires_grad for _, layer in self.sft_layers())

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    def sft_layers(self) -> Iterator[tuple[str, SftLinear]]:
        """``(name inside the base model, layer)`` for every sparse-delta layer."""
        for name, module in self.base_model.named_modules():
            if isinstance(module, SftLinear):
                yield name, module

    @property
    def trainable_parameters_groups(self) -> list[dict]:
        """Optimizer parameter groups: the delta values (the only trainable tensors)."""
        return [{"params": [layer.values for _, layer in self.sft_layers()
                            if layer.values.requires_grad]}]

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, all)`` parameter counts, 4-bit weights counted unpacked."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(_logical_numel(p) for p in self.parameters())
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
              f"trainable%: {100 * trainable / total:.4f}")

    def delta_grad_paths(self) -> dict[str, int]:
        """How many layers compute their delta gradient by each path of
        :mod:`sft.kernels` ("sddmm", "dense", "empty"), as chosen at their last forward for
        that forward's dtype and token count; layers not run yet count as "unplanned"."""
        counts: dict[str, int] = {}
        for _, layer in self.sft_layers():
            method = layer.delta_grad_method or "unplanned"
            counts[method] = counts.get(method, 0) + 1
        return counts

    def sft_state_bytes(self) -> int:
        """Bytes of every persistent SFT tensor (indices, values, ages, estimation stats)."""
        return sum(layer.state_bytes() for _, layer in self.sft_layers())

    # ---- saving and loading ------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike,
                        base_model_name_or_path: str | None = None,
                        model_card: bool = True) -> Path:
        """Write ``sft_model.safetensors`` (per layer: indices, values, grown_at, shape) and
        ``sft_config.json`` into ``save_directory``, both atomically and readable by others
        (0644 under the usual umask).

        ``sft_config.json`` also records ``base_model_name_or_path`` (by default the base
        model's ``name_or_path``, as transformers set it when loading), the library version
        and the budget (``tunable_weights`` of ``targeted_weights``); read them with
        :func:`sft.read_metadata`. ``model_card``: write a ``README.md`` (Hub model card) if
        the directory has none."""
        directory = Path(save_directory)
        write_deltas(self.sft_layers(), directory / WEIGHTS_NAME, self.num_reselections)
        facts = self.metadata(base_model_name_or_path)
        self.sft_config.save(directory / CONFIG_NAME, metadata=facts)
        if model_card and not (directory / "README.md").exists():
            atomic_write_text(directory / "README.md", model_card_text(self.sft_config.selection, facts))
        return directory

    def metadata(self, base_model_name_or_path: str | None = None) -> dict:
        """What :meth:`save_pretrained` records beside the config."""
        base = base_model_name_or_path or getattr(self.base_model, "name_or_path", None) or None
        layers = [layer for _, layer in self.sft_layers()]
        facts = {"sft_version": __version__,
                 "tunable_weights": sum(layer.num_active for layer in layers),
                 "targeted_weights": sum(layer.shape[0] * layer.shape[1] for layer in layers)}
        if base:
            facts["base_model_name_or_path"] = str(base)
        return facts

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    revision: str | None = None, commit_message: str = "Upload sparse fine-tuning",
                    create_pr: bool = False, base_model_name_or_path: str | None = None):
        """Save the SFT (as :meth:`save_pretrained`, with its model card) and upload it to the
        Hub repo ``repo_id`` (created if missing) through ``huggingface_hub``; returns the
        commit info. Load it back with ``SftModel.from_pretrained(base, repo_id)``."""
        return hub.push_to_hub(self, repo_id, private=private, token=token, revision=revision,
                               commit_message=commit_message, create_pr=create_pr,
                               base_model_name_or_path=base_model_name_or_path)

    @classmethod
    def from_pretrained(cls, model: nn.Module, paths: str | os.PathLike | Sequence,
                        is_trainable: bool = False, *, revision: str | None = None,
                        token: str | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False,
                        allow_different_bases: bool = False) -> "SftModel":
        """Apply saved SFT(s) to ``model``. Each of ``paths`` is a directory written by
        :meth:`save_pretrained` or a Hub repo id (``"user/repo"``, fetched with
        ``huggingface_hub.snapshot_download``; ``revision``, ``token``, ``cache_dir`` and
        ``local_files_only`` go to it, and ``HF_HUB_OFFLINE=1`` reads the local cache only).
        Several compose additively (W + Delta_1 + Delta_2 + ...: union of indices, values
        summed where they overlap); the config of the first is kept. Only a single SFT can be
        loaded ``is_trainable``. SFTs that record different base models
        (``base_model_name_or_path``) are refused unless ``allow_different_bases``."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [hub.resolve_sft_dir(p, revision=revision, token=token, cache_dir=cache_dir,
                                 local_files_only=local_files_only) for p in paths]
        if not paths:
            raise ValueError("from_pretrained needs at least one SFT directory")
        if is_trainable and len(paths) > 1:
            raise ValueError("a composition of several SFTs cannot be loaded trainable")
        config = SftConfig.load(paths[0] / CONFIG_NAME)
        if len(paths) > 1 and not allow_different_bases:
            check_same_base([(p / CONFIG_NAME, read_metadata(p / CONFIG_NAME)) for p in paths])
        loaded = [read_deltas(p / WEIGHTS_NAME, model) for p in paths]
        deltas = loaded[0][0] if len(loaded) == 1 else compose_deltas([d for d, _ in loaded])
        sft = cls(model, config, deltas=deltas, trainable=is_trainable)
        sft.num_reselections = loaded[0][1]
        if is_trainable:
            for _, layer in sft.sft_layers():
                layer.values.data = layer.values.data.to(config.torch_delta_dtype)
        return sft

    def load_deltas(self, directory: str | os.PathLike) -> None:
        """Overwrite the deltas in place with those ``save_pretrained`` wrote into ``directory``
        (same config, layers and sizes), e.g. to resume a run: the optimizer keeps its
        references to the ``values`` tensors, so its ``state_dict`` can be loaded afterwards.
        Everything is checked before anything is changed."""
        directory = Path(directory)
        saved_config = SftConfig.load(directory / CONFIG_NAME)
        if saved_config != self.sft_config:
            raise ValueError(f"{directory / CONFIG_NAME}: saved with {saved_config}, but this "
                             f"model has {self.sft_config}")
        path = directory / WEIGHTS_NAME
        deltas, num_reselections = read_deltas(path, self.base_model)
        layers = dict(self.sft_layers())
        if deltas.keys() != layers.keys():
            differ = sorted(deltas.keys() ^ layers.keys())
            raise ValueError(f"{path}: its layers differ from this model's, e.g. {differ[:4]}")
        for name, (indices, _, _) in deltas.items():
            if indices.numel() != layers[name].num_active:
                raise ValueError(f"{path}: {name} has {indices.numel()} entries, this model's "
                                 f"layer {layers[name].num_active}")
        with torch.no_grad():
            for name, (indices, values, grown_at) in deltas.items():
                layer = layers[name]
                layer.indices.copy_(indices)  # in place: the kernel plan sees the new version
                layer.values.copy_(values)
                layer.set_grown_at(grown_at)
                layer.sort_entries()  # files written before indices were kept sorted
        self.num_reselections = num_reselections

    # ---- leaving the SFT ---------------------------------------------------------------

    def _restore(self, merge: bool) -> nn.Module:
        shared = _shared_parameter_ids(self.base_model) if merge else set()
        untied = False
        for name, layer in list(self.sft_layers()):
            base = layer.base_layer
            if merge:
                with torch.no_grad():
                    weight, _ = dense_weight(base)
                    # fp32 sum, one rounding: what SftLinear's forward computes with
                    merged = (weight.float() + layer.delta_dense(torch.float32)).to(weight.dtype)
                    if id(base.weight) in shared and not is_4bit(base):
                        # A tied weight (an LM head sharing the input embedding): the delta
                        # belongs to this layer only, so it gets its own weight.
                        base.weight = nn.Parameter(merged, requires_grad=False)
                        untied = True
                    else:
                        replace_weight(base, merged)
            _set_submodule(self.base_model, name, base)
        if untied:
            _untie_word_embeddings(self.base_model)
        return self.base_model

    def merge_and_unload(self) -> nn.Module:
        """The base model with W <- W + Delta in every layer (re-quantized if 4-bit), exactly
        the weights the unmerged forward computes with. A targeted layer whose weight is tied
        to another module's (``lm_head`` and the input embedding) gets its own merged weight,
        and a transformers config is marked ``tie_word_embeddings=False``; the other module is
        unchanged. :func:`sft.export_merged` saves the result as a standalone model folder."""
        return self._restore(merge=True)

    def unload(self) -> nn.Module:
        """The base model as it was, deltas discarded."""
        return self._restore(merge=False)


def get_sft_model(model: nn.Module, config: SftConfig) -> SftModel:
    """Freeze ``model`` and give each targeted linear layer a sparse delta (values 0 at a
    random index set), so the output is initially identical to the base model's."""
    return SftModel(model, config)
