"""Method configs: `config/methods/<name>.yaml` -> one flat, resolved method dict.

A method file has a `builder` (which code trains it, see baselines.registry), `defaults`, and
optional per-model-size `sizes` (Table 4 for 7b/13b). It also holds the facts about the method
that the tables need (`method_facts`): its `label`, which of the paper's tables lists it
(`table`: 1, or 2 for the 4-bit methods), and for Table 3 its frozen floor and reference
(`profile: {floor, reference}`). Whether it is 4-bit is `defaults.quantize`; an untuned model
(the "Original" rows, and Table 3's floors) has `builder: untuned`. Resolution order, later wins:
defaults < sizes[model_size] < overrides (the config's `method_overrides` and the grid-search
wildcard). An override must name a key the method declares, so a typo fails instead of
silently training the default.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

META_KEYS = ("builder", "description", "peft_config")
FACT_KEYS = ("label", "table", "profile")
# Per model size, then mixture role: a released model evaluated instead of training, or why the
# cell is empty (the paper's protocol for full fine-tuning).
RUN_KEYS = ("released", "not_run")
FILE_KEYS = set(META_KEYS) | set(FACT_KEYS) | set(RUN_KEYS) | {"defaults", "sizes"}
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
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown} (allowed: {sorted(FILE_KEYS)})")
    if "builder" not in data:
        raise ValueError(f"{path}: missing 'builder'")
    for key in ("defaults", "sizes"):
        if not isinstance(data.get(key, {}), dict):
            raise ValueError(f"{path}: '{key}' must be a mapping")
    for size, values in data.get("sizes", {}).items():
        bad = sorted(set(values or {}) - set(data.get("defaults", {})))
        if bad:
            raise ValueError(f"{path}: sizes.{size} sets {bad}, which 'defaults' does not declare")
    for key in RUN_KEYS:
        for size, roles in data.get(key, {}).items():
            if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
                raise ValueError(f"{path}: {key}.{size} must map mixture roles to strings")
    if data.get("table") not in (None, 1, 2):
        raise ValueError(f"{path}: 'table' must be 1 or 2, got {data['table']!r}")
    profile = data.get("profile", {})
    if not isinstance(profile, dict) or set(profile) - {"floor", "reference"}:
        raise ValueError(f"{path}: 'profile' must be a mapping with 'floor' and 'reference'")
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
                   directory: Path | None = None) -> dict:
    """The resolved method: {"name", "builder", [peft_config], **hyperparameters, "model_size"}."""
    data = read_method_file(name, directory)
    defaults = dict(data.get("defaults", {}))
    resolved = dict(defaults)
    if model_size is not None:
        resolved.update(data.get("sizes", {}).get(str(model_size).lower(), {}) or {})
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ValueError(f"method {name!r}: override {key!r} is not a hyperparameter of "
                             f"{data['_path']} (declared: {sorted(defaults)})")
        resolved[key] = value
    meta = {k: data[k] for k in META_KEYS if k in data and k != "description"}
    return {"name": name, **meta, **resolved, "model_size": model_size}
