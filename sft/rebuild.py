"""Rebuild an SFT layer's input in the backward from tensors autograd keeps anyway.

The delta gradient needs the layer's input x, so the layer used to save it. In a Llama block
every such x is an elementwise product whose operands autograd already saved for the product's
own backward: the q/k/v and gate/up inputs are RMSNorm's ``weight * (h * rsqrt(...))`` (cast to
the compute dtype), the down_proj input is ``SiLU(gate) * up``. Saving x again costs 2h + f
values per token and block, 2.3 GiB at Llama-2-7b in bf16 with 2,048 tokens; rebuilding it costs
one or two elementwise products per layer in the backward, where its matmuls cost thousands.

``torch.utils.checkpoint`` recomputes whole regions (here the projections' matmuls too), and
autograd offers no "rebuild from the producer's saved tensors" mode, so this small replay over
the documented ``grad_fn._saved_self`` / ``_saved_other`` attributes is written by hand. It knows
two producers, the elementwise product (``MulBackward0``) and the dtype cast
(``ToCopyBackward0``); anything else, a graph deeper than ``MAX_DEPTH``, or saved-tensor hooks
in force (activation checkpointing, offloading: they own what is saved), and the layer saves x
as before. A cast records no target dtype on its node: the replay casts to the product's
dtype, and :meth:`sft.SftLinear.input_rebuilder` checks a rebuild against x bit for bit once per
layer and graph signature before trusting it.

Layers fed the same tensor one after another (q, k and v; gate and up) share one rebuilder,
which keeps its result from the first of them to need it in the backward until the producer's
own backward starts (a pre-hook on the producer's node), so x is rebuilt once per block input,
not once per projection, and lives only between those moments.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_DEPTH = 4


@dataclass(frozen=True)
class _Saved:
    """An operand a product node saved (``_saved_self`` or ``_saved_other``)."""
    node: object
    attribute: str

    def __call__(self) -> Tensor:
        return getattr(self.node, self.attribute)


@dataclass(frozen=True)
class _Product:
    left: object
    right: object

    def __call__(self) -> Tensor:
        return self.left() * self.right()


@dataclass(frozen=True)
class _Cast:
    source: object
    dtype: torch.dtype

    def __call__(self) -> Tensor:
        return self.source().to(self.dtype)


class InputRebuilder:
    """Recomputes a tensor from its producers' saved tensors. ``signature`` names the producer
    graph (node names and dtypes), the key under which a layer remembers that it checked out;
    ``replay()`` recomputes, calling the rebuilder returns the shared result (module docstring)."""

    def __init__(self, producer, replay, signature: tuple):
        self.replay = replay
        self.signature = signature
        self.value: Tensor | None = None
        # By weak reference: the node must not keep the rebuilder (and through it the node) alive.
        producer.register_prehook(lambda grad_outputs, me=weakref.ref(self): _release(me))

    def __call__(self) -> Tensor:
        if self.value is None:
            self.value = self.replay()
        return self.value


def _release(rebuilder: weakref.ref) -> None:
    alive = rebuilder()
    if alive is not None:
        alive.value = None


def _plan(node, dtype: torch.dtype, depth: int, signature: list):
    if node is None or depth > MAX_DEPTH:
        return None
    name = node.name()
    signature.append((depth, name, dtype))
    if name == "MulBackward0":
        operands = []
        for position, attribute in enumerate(("_saved_self", "_saved_other")):
            try:
                saved = getattr(node, attribute, None)
            except RuntimeError:  # freed by a backward already run through this graph
                return None
            if isinstance(saved, Tensor):
                signature.append((depth, attribute, saved.dtype))
                operands.append(_Saved(node, attribute))
                continue
            operand = _plan(node.next_functions[position][0], dtype, depth + 1, signature)
            if operand is None:
                return None
            operands.append(operand)
        return _Product(*operands)
    if name == "ToCopyBackward0":
        source = _plan(node.next_functions[0][0], dtype, depth + 1, signature)
        return None if source is None else _Cast(source, dtype)
    return None


def _saved_tensor_hooks_active() -> bool:
    """Whether saved-tensor hooks (non-reentrant checkpointing, CPU offloading) manage what
    autograd saves. Under them a saved tensor may be unpacked only once (by its own node), so
    x is saved through them as usual. No public API tells; where this private one is missing,
    assume hooks are active (saving x is always correct)."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top is None or top(False) is not None


# The last tensor asked about (and its version) and its rebuilder, all by weak reference so
# that nothing here outlives the graph: consecutive layers fed the same tensor share one.
_last: tuple[weakref.ref, int, weakref.ref | None] | None = None


def input_rebuilder(x: Tensor) -> InputRebuilder | None:
    """A rebuilder of ``x`` from the tensors its producers saved, or None where the producer
    graph is not one this module can replay (then ``x`` must be saved)."""
    global _last
    if _saved_tensor_hooks_active():
        return None
    if _last is not None and _last[0]() is x and _last[1] == x._version:
        if _last[2] is None:
            return None
        if _last[2]() is not None:
            return _last[2]()
    rebuilder = None
    if x.grad_fn is not None:
        signature: list = []
        replay = _plan(x.grad_fn, x.dtype, 0, signature)
        if replay is not None:
            rebuilder = InputRebuilder(x.grad_fn, replay, tuple(signature))
    _last = (weakref.ref(x), x._version, rebuilder and weakref.ref(rebuilder))
    return rebuilder
