"""Which linear layers get a sparse delta, and how many tunable weights each one gets.

The paper tunes every linear layer of every Transformer block and gives each matrix the same
density, with the total matched to a LoRA rank r on the same modules: r * (d_in + d_out) per
matrix (:func:`lora_equivalent_budget`; LLaMA-2-7b gives 2,498,560 per rank).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch import nn


def _is_supported_linear(module: nn.Module) -> bool:
    # bitsandbytes' Linear4bit subclasses nn.Linear; its weight is a packed Params4bit.
    return isinstance(module, nn.Linear)


def check_supported_weight(name: str, linear: nn.Linear) -> None:
    """Raise ``ValueError`` unless ``linear``'s weight can carry a sparse delta: a dense float
    weight, or bitsandbytes' packed 4-bit ``Params4bit`` (dequantized on use). bitsandbytes'
    8-bit ``Linear8bitLt`` holds int8 codes (on CPU, before it is moved to a GPU, still float
    weights that the move quantizes), and any other integer weight is codes, not weights."""
    weight = linear.weight
    if type(linear).__name__ == "Linear8bitLt" or type(weight).__name__ == "Int8Params":
        raise ValueError(
            f"bitsandbytes 8-bit layers (Linear8bitLt) cannot carry sparse deltas (layer {name}): "
            "their weights are int8 codes. Load the base model in 16/32-bit, or in 4-bit "
            "(BitsAndBytesConfig(load_in_4bit=True), qSFT)")
    if type(weight).__name__ != "Params4bit" and not weight.dtype.is_floating_point:
        raise ValueError(
            f"weights stored as {weight.dtype} cannot carry sparse deltas (layer {name}): only "
            "floating-point weights and bitsandbytes 4-bit weights are supported")


def check_not_other_weight_layer(name: str, module: nn.Module, named: bool) -> None:
    """Raise ``ValueError`` for a selected layer with a weight matrix that is not an
    ``nn.Linear``, rather than leave it silently untuned: transformers' ``Conv1D`` (GPT-2 and
    its relatives keep every projection in one, its weight stored transposed), convolutions,
    and, where ``target_modules`` names them, embeddings (by default, an embedding inside a
    block, such as T5's relative position bias, is simply not a linear layer)."""
    weight = module._parameters.get("weight")
    if isinstance(module, nn.Linear) or weight is None or weight.dim() < 2:
        return
    if isinstance(module, nn.Embedding) and not named:
        return
    kind = f"{type(module).__module__}.{type(module).__name__}"
    raise ValueError(
        f"layer {name} is a {kind}, not an nn.Linear: sparse fine-tuning wraps nn.Linear layers "
        "only. Load the model with nn.Linear projections, or name only nn.Linear layers in "
        "target_modules")


def _matches(name: str, suffixes: Sequence[str]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def _inside_blocks(model: nn.Module) -> list[str]:
    """Name prefixes of every ``nn.ModuleList`` (where HF models keep their blocks)."""
    return [name + "." for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]


def find_target_linears(
    model: nn.Module, target_modules: Sequence[str] | None = None
) -> Iterator[tuple[str, nn.Linear]]:
    """Yield ``(qualified_name, linear)`` for every linear layer to tune, in module order.

    ``None`` selects every linear layer inside the repeated blocks (excludes the LM head and
    any projection outside a ``ModuleList``); a list selects names ending in one of its
    entries (peft semantics). Raises ``ValueError`` if nothing matches, if a matching
    layer's weight cannot carry a delta (:func:`check_supported_weight`: int8 / 8-bit layers),
    or if a matching layer is a weight layer of another type (:func:`check_not_other_weight_layer`:
    GPT-2's ``Conv1D``, ...).
    """
    if target_modules is None:
        prefixes = _inside_blocks(model)
        chosen = lambda name: any(name.startswith(p) for p in prefixes)  # noqa: E731
        what = "linear layers inside an nn.ModuleList (the model's blocks)"
    else:
        chosen = lambda name: _matches(name, target_modules)  # noqa: E731
        what = f"linear layers named by target_modules={list(target_modules)}"
    found = []
    for name, module in model.named_modules():
        if not chosen(name):
            continue
        check_not_other_weight_layer(name, module, named=target_modules is not None)
        if _is_supported_linear(module):
            check_supported_weight(name, module)
            found.append((name, module))
    if not found:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:8]
        raise ValueError(f"no {what} in {type(model).__name__}; its linear layers include {linears}")
    yield from found


def weight_shape(linear: nn.Linear) -> tuple[int, int]:
    """``(d_out, d_in)`` of the logical weight (a 4-bit weight is stored packed)."""
    return int(linear.out_features), int(linear.in_features)


def lora_equivalent_budget(
    model: nn.Module, rank: int, target_modules: Sequence[str] | None = None
) -> int:
    """Exactly the number of parameters LoRA of ``rank`` trains on the same modules.

    LoRA adds A (r x d_in) and B (d_out x r) per matrix: r * (d_in + d_out), summed.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    return sum(
        rank * (d_in + d_out)
        for _, lin in find_target_linears(model, target_modules)
        for d_out, d_in in [weight_shape(lin)]
    )


def allocate_budget(
    sizes: Sequence[int], density: float | None = None, num_tunable_weights: int | None = None
) -> list[int]:
    """Tunable weights per matrix, every matrix at (as nearly as integers allow) one density.

    With ``num_tunable_weights`` the shares are rounded by largest remainder so that they sum
    to exactly that number. Raises ``ValueError`` if a matrix would get no weights or the
    budget exceeds the matrices' total size.
    """
    total = sum(sizes)
    if num_tunable_weights is not None:
        if num_tunable_weights > total:
            raise ValueError(
                f"num_tunable_weights={num_tunable_weights} exceeds the {total} weights of the "
                "targeted modules"
            )
        exact = [num_tunable_weights * s / total for s in sizes]
        counts = [int(e) for e in exact]
        by_remainder = sorted(range(len(sizes)), key=lambda i: (counts[i] - exact[i], i))
        for i in by_remainder[: num_tunable_weights - sum(counts)]:
            counts[i] += 1
    else:
        counts = [min(s, int(round(density * s))) for s in sizes]
    if any(c == 0 for c in counts):
        raise ValueError(
            "the budget is too small: some targeted matrix would get 0 tunable weights "
            f"(sizes {list(sizes)}, density {density}, num_tunable_weights {num_tunable_weights})"
        )
    return counts
