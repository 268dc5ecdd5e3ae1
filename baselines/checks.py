"""What a method file and a resolved method may hold, checked without torch (the DAG imports this
while it parses): the method schema, `baselines/method.schema.yaml`, and the keys each builder
takes (each Builder's `keys`). Each message names where the bad value came from: the method file and its key
(`config/methods/lora.yaml: sizes.7b.r`), or the override's source (`method_overrides.lora.r`).

What needs the builders' libraries (a peft config class and its kwargs, SpIEL's SftConfig) is
each Builder's `check`, run by `baselines.registry.check_method`; study.plan calls both before
any job starts.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).with_name("method.schema.yaml")

# Keys of a resolved method that the training loop consumes; everything else is the builder's.
LOOP_KEYS = frozenset({"lr", "weight_decay", "quantize", "optimizer", "activation_checkpointing",
                       "weights_dtype"})
# Where a resolved method's hyperparameters came from (study.plan writes it into method.json):
# a record for people and the tables, never a builder's argument.
SETTING_SOURCE = "setting_source"
IDENTITY_KEYS = frozenset({"name", "builder", "peft_config", "model_size", SETTING_SOURCE})



def builder_kwargs(method: dict) -> dict:
    return {k: v for k, v in method.items() if k not in LOOP_KEYS | IDENTITY_KEYS}


@lru_cache(maxsize=None)
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _validator(part: str | None = None):
    import jsonschema

    schema = _schema()
    if part is not None:  # one of $defs, against the same $defs
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"],
                  "$ref": f"#/$defs/{part}", "type": "object"}
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _problems(validator, data: dict) -> list[tuple[list, str]]:
    """(path to the bad value, message) for every error, the most specific one of a branch."""
    from jsonschema.exceptions import best_match

    found = []
    for error in validator.iter_errors(data):
        while error.context:
            error = best_match(error.context)
        message = error.message
        if isinstance(error.instance, str) and _is_number(error.instance) and "number" in message:
            message += f" (YAML reads {error.instance} as a string: write it with a dot, e.g. 1.0e-4)"
        found.append((list(error.absolute_path), message))
    # JSON Schema's ranges compare, and every comparison with NaN is false: `lr: .nan` would pass.
    found += [(path, f"{value} is not a finite number") for path, value in non_finite(data)]
    return sorted(found, key=lambda item: [str(p) for p in item[0]])


def non_finite(data, path: tuple = ()) -> list[tuple[list, float]]:
    """(path, value) of every NaN or infinite number in nested dicts and lists (YAML's `.nan`,
    `.inf`; JSON's NaN, Infinity), which range checks let through."""
    if isinstance(data, float) and not math.isfinite(data):
        return [(list(path), data)]
    if isinstance(data, dict):
        return [found for k, v in data.items() for found in non_finite(v, (*path, k))]
    if isinstance(data, list):
        return [found for i, v in enumerate(data) for found in non_finite(v, (*path, i))]
    return []


def non_finite_problems(data) -> list[str]:
    """One line per NaN or infinite number in `data` (a config), naming its key."""
    return [f"{_dotted(path)}: {value} is not a finite number" for path, value in non_finite(data)]


def _is_number(text: str) -> bool:
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text.strip()) is not None


def _suffix(path: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _dotted(path: list) -> str:
    text = _suffix(path)
    return text[1:] if text.startswith(".") else text


def method_file_problems(data: dict, path: str) -> list[str]:
    """A method file's problems, one line each naming the file and the key: the schema's, and
    a per-size value of a key that `defaults` does not declare."""
    lines = [f"{path}: {_dotted(p) + ': ' if p else ''}{message}"
             for p, message in _problems(_validator(), data)]
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    sizes = data.get("sizes") if isinstance(data.get("sizes"), dict) else {}
    for size, values in sizes.items():
        bad = sorted(set(values or {}) - set(defaults)) if isinstance(values, dict) else []
        if bad:
            lines.append(f"{path}: sizes.{size} sets {bad}, which 'defaults' does not declare")
    return lines


def validate_resolved(name: str, resolved: dict, origin) -> None:
    """A resolved method's hyperparameters against the schema; `origin(key)` says where a key's
    value came from (a method file key, or an override's source in the config)."""
    lines = [f"{origin(p[0]) + _suffix(p[1:]) if p else f'method {name!r}'}: {message}"
             for p, message in _problems(_validator("hyperparameters"), resolved)]
    if lines:
        raise ValueError("\n".join(dict.fromkeys(lines)))
