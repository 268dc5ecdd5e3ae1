"""The config checks the schema cannot express, run before any job starts: cross-references
between the config's sections, and every method the config uses resolved at each model size it
runs at and checked against baselines/method.schema.yaml and by its builder. Each error names
the config key or the method file. Separate from study.plan, which only plans.
"""
from __future__ import annotations

import json

from baselines.checks import non_finite_problems
from baselines.config import available_methods, method_facts, methods_dir, read_method_file, resolve_method
from finetune.mixtures import validate_spec
from study.plan import TABLES, Plan


def check_references(plan: Plan, builders: bool = True) -> None:
    """Cross-references and every method the config uses (check_methods), checked before any
    job starts; raises naming every bad key. `builders=False` skips the builders' own checks
    (they import torch and peft), for a process that is not the one planning the DAG."""
    config, errors = plan.config, []
    for i, name in enumerate(plan.study["models"]):
        if name not in config["models"]:
            errors.append(f"study.models[{i}]: unknown model {name!r} (known: {sorted(config['models'])})")
    for role, recipe in plan.study["mixtures"].items():
        if recipe not in config["mixtures"]:
            errors.append(f"study.mixtures.{role}: unknown recipe {recipe!r} (known: {sorted(config['mixtures'])})")
    known = available_methods()
    for table in TABLES:
        for role in plan.study[table]["columns"]:
            if plan.study[table]["columns"][role] and role not in plan.study["mixtures"]:
                errors.append(f"study.{table}.columns.{role}: no recipe for role {role!r} in study.mixtures")
        for i, method in enumerate(plan.study[table]["methods"]):
            if method != "*" and method not in known:
                errors.append(f"study.{table}.methods[{i}]: unknown method {method!r} (no {methods_dir()}/{method}.yaml)")
    for i, method in enumerate(plan.config.get("profile", {}).get("methods", [])):
        if method not in known:
            errors.append(f"profile.methods[{i}]: unknown method {method!r} (no {methods_dir()}/{method}.yaml)")
    for name, spec in config["mixtures"].items():
        try:
            validate_spec(name, spec)
        except ValueError as err:
            errors.append(f"mixtures.{name}: {err}")
    for method in config["method_overrides"]:
        if method not in known:
            errors.append(f"method_overrides.{method}: unknown method {method!r} (no {methods_dir()}/{method}.yaml)")
    for i, search in enumerate(plan.study["grid"]["searches"]):
        if search["method"] not in known:
            errors.append(f"study.grid.searches[{i}].method: unknown method {search['method']!r} "
                          f"(no {methods_dir()}/{search['method']}.yaml)")
    errors += non_finite_problems(config) + check_methods(plan, set(known), builders)
    if errors:
        raise ValueError("invalid config:\n  " + "\n  ".join(dict.fromkeys(errors)))


def method_uses(plan: Plan, known: set[str]) -> list[tuple[str, str | None, dict, dict]]:
    """Every (method, model size, overrides, where each override is set) the config trains,
    evaluates or measures: the tables' methods (with "*") at the study's sizes, the grid's
    points at the grid's sizes, Table 3's methods and floors at its sizes, and any other
    method with `method_overrides`. Unknown names are check_references' errors already."""
    def sizes(models):
        return sorted({plan.model_size(m) for m in models if m in plan.config["models"]}) or [None]

    def overridden(method):
        given = plan.config["method_overrides"].get(method, {})
        return dict(given), {k: f"method_overrides.{method}.{k}" for k in given}

    def facts(method):  # a bad file: its check reports it
        try:
            return method_facts(method)
        except ValueError:
            return {"floor": None}

    uses = []
    study_sizes = sizes(plan.study["models"])
    tabled = [m for t in TABLES for m in plan.table_methods(t, with_unreadable=True) if m in known]
    for method in dict.fromkeys([*tabled, *plan.config["method_overrides"]]):
        if method in known:
            uses += [(method, size, *overridden(method)) for size in study_sizes]
    grid_sizes = sizes(plan.study["grid"]["models"])
    for i, method, point in plan.grid_search_points():
        if method in known:
            base, where = overridden(method)
            where.update({k: f"study.grid.searches[{i}].{k}" for k in point})
            uses += [(method, size, {**base, **point}, where) for size in grid_sizes]
    settings = plan.profile_settings()
    profiled = [m for m in settings["methods"] if m in known]
    for method in profiled:  # with Table 3's floors (finetune.profiling.measure resolves them)
        floor = facts(method)["floor"]
        profiled += [floor] if floor in known and floor not in profiled else []
    for method in profiled:
        try:
            ranked = "r" in read_method_file(method).get("defaults", {})
        except ValueError:
            ranked = False
        rank = ({"r": settings["rank"]}, {"r": "profile.rank"}) if ranked else ({}, {})
        uses += [(method, size, *rank) for size in sizes(settings["models"])]
    return uses


def check_methods(plan: Plan, known: set[str], builders: bool = True) -> list[str]:
    """Every method the config uses, resolved for every model size it runs at and checked
    before any job starts: values against baselines/method.schema.yaml (while resolving),
    then, with `builders`, the builder's own check (its keys; a peft config class
    instantiated with its kwargs; SpIEL's SftConfig). Each message names the method file or
    the config key. The builders import torch, peft and sft: only here, never at import."""
    errors, checked = [], set()
    for method, size, overrides, where in method_uses(plan, known):
        try:
            resolved = resolve_method(method, overrides, size, sources=where)
        except ValueError as err:
            errors += str(err).splitlines()
            continue
        key = json.dumps({k: v for k, v in resolved.items() if k != "model_size"},
                         sort_keys=True, default=str)
        if not builders or key in checked:
            continue
        checked.add(key)
        from baselines.registry import check_method  # torch, peft, sft: only when checking

        try:
            check_method(resolved)
        except ValueError as err:
            path = f"{methods_dir()}/{method}.yaml"
            given = sorted({where[k] for k in overrides}) if overrides else []
            context = (f" with {', '.join(given)}" if given else "") + (f" at size {size}" if size else "")
            message = f"{path}{context}: {err}"
            if all(f": {err}" not in e for e in errors):
                errors.append(message)
    return errors
