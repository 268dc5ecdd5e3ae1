"""Method configs: `config/methods/<name>.yaml` -> one flat, resolved method dict.

A method file has a `builder` (which code trains it, see baselines.registry), `defaults`, and
optional per-model-size `sizes` (Table 4 for 7b/13b). It also holds the facts about the method
that the tables need (`method_facts`): its `label`, which of the paper's tables lists it
(`table`: 1, or 2 for the 4-bit methods), and for Table 3 its frozen floor and reference
(`profile: {floor, reference}`). Whether it is 4-bit is `defaults.quantize`; an untuned model
(the "Original" rows, and Table 3's floors) has `builder: untuned`. Resolution order, later wins:
defaults < sizes[model_size] < overrides (the config's `method_overrides` and the grid-search
wildcard). An override must name a key the method declares, so a typo fails instead of
silently training the default. The file and every resolved method are checked against
baselines/method.schema.yaml (baselines.checks): a bad value fails naming its file and key, or
the config key of the override that set it.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from baselines.checks import method_file_problems, validate_resolved

META_KEYS = ("builder", "description", "peft_config")
# Per model size, then mixture role: a released model evaluated instead of training, or why the
# cell is empty (the paper's protocol for full fine-tuning).
RUN_KEYS = ("released", "not_run")
UNTUNED_BUILDER = "untuned"


def methods_dir() -> Path:
    """`$SFT_METHODS_DIR`; else the checkout's `config/methods` (next to this package); else,
    installed from a wheel, the copy of it shipped as `baselines/method_files`."""
    env = os.environ.get("SFT_METHODS_DIR")
    return Path(env) if env else _packaged_methods_dir(Path(__file__).resolve().parent)


def _packaged_methods_dir(package: Path) -> Path:
    checkout = package.parent / "config" / "methods"
    return checkout if checkout.is_dir() else package / "method_files"


def available_methods(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or methods_dir()).glob("*.yaml"))


def read_method_file(name: str, directory: Path | None = None) -> dict:
    path = (directory or methods_dir()) / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown method {name!r}: no {path} (known: {available_methods(directory)})")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 (byte 0x{err.object[err.start]:02x} at byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    except RecursionError:
        raise ValueError(f"{path}: not readable YAML (nested too deeply)") from None
    except ValueError as err:  # an integer past Python's 4300-digit conversion limit
        raise ValueError(f"{path}: not readable YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    problems = method_file_problems(data, str(path))  # baselines/method.schema.yaml
    if problems:
        raise ValueError("\n".join(problems))
    data["_path"] = str(path)
    return data


def run_plan(name: str, model_size: str | None, role: str,
             directory: Path | None = None) -> tuple[str, str | None]:
    """How a method's cell for (model size, mixture role) is filled: ("train", None),
    ("released", hub id of the model to evaluate instead), or ("not_run", the reason)."""
    data = read_method_file(name, directory)
    size = str(model_size).lower()
    for key in RUN_KEYS:
        value = data.get(key, {}).get(size, {}).get(role)
        if value:
            return key, value
    return "train", None


def method_facts(name: str, directory: Path | None = None) -> dict:
    """What the DAG and the tables know about a method, all from its file: label, table (1 or 2;
    a file without `table` joins Table 2 if it is 4-bit, else Table 1), quantized (4-bit),
    untuned (no training run), and Table 3's floor and reference."""
    data = read_method_file(name, directory)
    profile = data.get("profile", {})
    quantized = bool(data.get("defaults", {}).get("quantize"))
    return {"name": name, "label": data.get("label", name),
            "table": data.get("table", 2 if quantized else 1), "quantized": quantized,
            "untuned": data["builder"] == UNTUNED_BUILDER,
            "floor": profile.get("floor"), "reference": profile.get("reference")}


def resolve_method(name: str, overrides: dict | None = None, model_size: str | None = None,
                   directory: Path | None = None, sources: dict[str, str] | None = None) -> dict:
    """The resolved method: {"name", "builder", [peft_config], **hyperparameters, "model_size"}.

    Its hyperparameters are checked against the method schema (baselines/method.schema.yaml);
    a bad value raises ValueError naming where it came from: `sources[key]` for an override
    (the config key that set it, e.g. "method_overrides.lora.r"), else the method file's key.
    """
    data = read_method_file(name, directory)
    defaults = dict(data.get("defaults", {}))
    size = str(model_size).lower() if model_size is not None else None
    per_size = (data.get("sizes", {}).get(size) or {}) if size is not None else {}
    sources = sources or {}

    def origin(key: str) -> str:
        if key in (overrides or {}):
            return sources.get(key, f"method {name!r}: override {key!r}")
        return f"{data['_path']}: {f'sizes.{size}' if key in per_size else 'defaults'}.{key}"

    resolved = {**defaults, **per_size}
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ValueError(f"{origin(key)}: not a hyperparameter of {data['_path']} "
                             f"(declared: {sorted(defaults)})")
        resolved[key] = value
    validate_resolved(name, resolved, origin)
    meta = {k: data[k] for k in META_KEYS if k in data and k != "description"}
    return {"name": name, **meta, **resolved, "model_size": model_size}
