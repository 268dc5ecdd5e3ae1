"""The builders, listed explicitly (as peft lists its dispatchers): a method file's `builder`
key is looked up here. A bespoke method adds its Builder subclass to this table."""
from __future__ import annotations

from baselines.builder import Builder
from baselines.full import FullBuilder
from baselines.peft_methods import PeftBuilder
from baselines.sift.builder import SiftBuilder
from baselines.sparse import SftBuilder
from baselines.untuned import UntunedBuilder

BUILDERS: dict[str, type[Builder]] = {
    "full": FullBuilder,
    "peft": PeftBuilder,
    "sft": SftBuilder,
    "sift": SiftBuilder,
    "untuned": UntunedBuilder,
}


def check_method(method: dict) -> None:
    """A resolved method's builder-specific checks, without loading a model: its keys, and the
    peft config class and kwargs, or SpIEL's SftConfig (imports torch, peft and sft)."""
    get_builder(method).check(method)


def get_builder(method: dict) -> Builder:
    """A fresh builder for a resolved method (builders may keep per-run state, e.g. SIFT's budget)."""
    name = method.get("builder")
    if name not in BUILDERS:
        raise ValueError(f"method {method.get('name')!r}: unknown builder {name!r} "
                         f"(known: {sorted(BUILDERS)})")
    return BUILDERS[name]()
