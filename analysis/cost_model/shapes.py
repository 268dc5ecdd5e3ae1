"""A decoder-only transformer's shapes, read from its config.json (a local file or folder, one
of the configs packaged here, or the hub's config.json alone: never the weights).

Only Llama-shaped models (q, k, v, o, gate, up, down per block; RMSNorm; SwiGLU MLP) are
modelled: Llama-2, SmolLM2, Mistral and Qwen2 share that block.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

PACKAGED = {"meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-2-13b-hf": "llama-2-13b",
            "HuggingFaceTB/SmolLM2-135M": "smollm2-135m"}
LLAMA_LIKE = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    def block_linears(self) -> list[tuple[str, int, int]]:
        """(name, d_in, d_out) of the seven projections of one block: what LoRA's all-linear
        and SpIEL's default targets tune (every linear inside the blocks, not the LM head)."""
        h, f, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h),
                ("gate_proj", h, f), ("up_proj", h, f), ("down_proj", f, h)]

    @property
    def block_linear_params(self) -> int:
        return self.layers * sum(d_in * d_out for _, d_in, d_out in self.block_linears())

    @property
    def other_params(self) -> int:
        """Embedding, LM head (unless tied) and the RMSNorm weights: never 4-bit."""
        head = 0 if self.tied else self.vocab * self.hidden
        return self.vocab * self.hidden + head + self.hidden * (2 * self.layers + 1)

    @property
    def total_params(self) -> int:
        return self.block_linear_params + self.other_params

    def lora_params(self, rank: int) -> int:
        """LoRA's r * (d_in + d_out) per targeted matrix; SpIEL's budget is the same number
        (sft.lora_equivalent_budget)."""
        return rank * self.layers * sum(d_in + d_out for _, d_in, d_out in self.block_linears())

    def active_per_matrix(self, rank: int) -> list[tuple[str, int, int, int]]:
        """(name, d_in, d_out, tuned entries) per block matrix: the budget shared in proportion
        to the matrices' sizes (sft.allocate_budget; one density for all), rounding ignored."""
        density = self.lora_params(rank) / self.block_linear_params
        return [(n, i, o, round(density * i * o)) for n, i, o in self.block_linears()]


def _require(config: dict, key: str, source: str) -> int:
    if key not in config:
        raise ValueError(f"{source}: config.json has no {key!r}")
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: {key!r} must be a positive integer, got {value!r}")
    return value


def shape_from_config(config: dict, name: str, source: str) -> ModelShape:
    """The shapes of a config.json's dict; ``source`` names it in errors."""
    kind = config.get("model_type")
    if kind not in LLAMA_LIKE:
        raise ValueError(f"{source}: model_type {kind!r} is not one the cost model knows "
                         f"(a Llama-shaped block: {', '.join(LLAMA_LIKE)})")
    hidden = _require(config, "hidden_size", source)
    heads = _require(config, "num_attention_heads", source)
    # Optional keys, with transformers' defaults: as many KV heads as heads, hidden / heads.
    optional = {"num_key_value_heads": config.get("num_key_value_heads") or heads,
                "head_dim": config.get("head_dim") or hidden // heads}
    return ModelShape(
        name=name, hidden=hidden, intermediate=_require(config, "intermediate_size", source),
        layers=_require(config, "num_hidden_layers", source), heads=heads,
        kv_heads=_require(optional, "num_key_value_heads", source),
        head_dim=_require(optional, "head_dim", source),
        vocab=_require(config, "vocab_size", source),
        tied=bool(config.get("tie_word_embeddings", False)))


def load_shape(model: str) -> ModelShape:
    """``model``: a config.json file, a folder holding one, a packaged name or hub id
    (``PACKAGED``), or any other hub id (only its config.json is downloaded)."""
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        source, name = str(path), path.parent.name if path.name == "config.json" else path.stem
        text = path.read_text(encoding="utf-8")
    elif model in PACKAGED or model in PACKAGED.values():
        name = PACKAGED.get(model, model)
        source = f"analysis/cost_model/{name}.json"
        text = files("analysis.cost_model").joinpath(f"{name}.json").read_text(encoding="utf-8")
    else:
        from huggingface_hub import hf_hub_download

        try:
            local = hf_hub_download(model, "config.json")
        except Exception as err:  # offline, unknown repo, gated: say which and why
            raise ValueError(f"{model}: no such config.json file or folder, not a packaged "
                             f"config ({sorted(PACKAGED)}), and the hub's config.json could not "
                             f"be read: {type(err).__name__}: {err}") from None
        source, name, text = f"{model} (hub config.json)", model.rsplit("/", 1)[-1], Path(local).read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}:{err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{source}: expected a JSON object")
    return shape_from_config(config, name, source)
