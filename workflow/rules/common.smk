# Shared paths and helpers. Data flows one way:
# config -> prepared model/data -> runs/<run>/ (train) -> evals/<run>/ -> tables and figures.
import itertools
import json
from pathlib import Path

from analysis.tables import UNTUNED
from baselines.config import available_methods, methods_dir, read_method_file, resolve_method
from finetune.mixtures import validate_spec

CACHE = config["cache_dir"]
RESULTS = config["results_dir"]
STUDY = config["study"]
BENCHMARKS = ["mmlu", "gsm", "bbh", "tydiqa", "humaneval"]
# One run directory per (model, mixture role, method, hyperparameter tag, seed).
RUN = "{model}/{mixture}/{method}/{hp}/seed{seed}"

ROLES = ["flan", "single", "mix"]

wildcard_constraints:
    model="[A-Za-z0-9._-]+",
    mixture="|".join(ROLES + ["none"]),
    method="[A-Za-z0-9._-]+",
    bench="|".join(BENCHMARKS),
    seed=r"\d+",


def model_inputs(wildcards):
    """A packaged model is prepared once into the cache; a hub id needs no local input."""
    entry = config["models"][wildcards.model]
    return [] if "hub" in entry else [f"{CACHE}/models/{wildcards.model}/config.json"]


def model_path(name):
    entry = config["models"][name]
    return entry["hub"] if "hub" in entry else f"{CACHE}/models/{name}"


def mixture_spec(role):
    """The study maps each mixture role (flan, single, mix) to a named recipe in `mixtures`."""
    return config["mixtures"][STUDY["mixtures"][role]]


def table_columns():
    """(mixture role, benchmark) pairs that some table asks for."""
    pairs = []
    for table in ("table1", "table2"):
        for role, benches in STUDY[table]["columns"].items():
            pairs += [(role, b) for b in benches if (role, b) not in pairs]
    return pairs


def evaluations_for(mixture, hp="default"):
    """(benchmarks, held-out roles) a run is evaluated on. A tuned run: its mixture's table
    columns; an untuned model (mixture "none"): every column; a grid point: its dev score only."""
    pairs = table_columns()
    if hp != "default":
        score = STUDY["grid"]["score"]
        pairs = [(mixture, score)]
    elif mixture != "none":
        pairs = [(role, b) for role, b in pairs if role == mixture]
    benches = sorted({b for _, b in pairs if b in BENCHMARKS}, key=BENCHMARKS.index)
    roles = sorted({role for role, b in pairs if b == "heldout_loss"}, key=ROLES.index)
    return benches, roles


def rule_resources(name):
    """Per-rule threads/memory/runtime/gpu from config, so local and slurm runs share one DAG."""
    return config["resources"][name]


def planned_runs(table):
    """{method: [(mixture role, benchmark), ...]} that this config evaluates for `table`."""
    spec = STUDY[table]
    pairs = [(r, b) for r, bs in spec["columns"].items() for b in bs]
    return {m: pairs for m in table_methods(table)}


def table_inputs(table):
    paths = set()
    for model in STUDY["models"]:
        for method, pairs in planned_runs(table).items():
            for role, _ in pairs:
                for seed in STUDY["seeds"]:
                    mixture = "none" if method in UNTUNED else role
                    paths.add(f"{RESULTS}/evals/{model}/{mixture}/{method}/default/seed{seed}/index.json")
    return sorted(paths)


def check_references():
    """Cross-references the schema cannot express, checked before any job starts."""
    errors = []
    for i, name in enumerate(STUDY["models"]):
        if name not in config["models"]:
            errors.append(f"study.models[{i}]: unknown model {name!r} (known: {sorted(config['models'])})")
    for role, recipe in STUDY["mixtures"].items():
        if recipe not in config["mixtures"]:
            errors.append(f"study.mixtures.{role}: unknown recipe {recipe!r} (known: {sorted(config['mixtures'])})")
    for table in ("table1", "table2"):
        for role in STUDY[table]["columns"]:
            if STUDY[table]["columns"][role] and role not in STUDY["mixtures"]:
                errors.append(f"study.{table}.columns.{role}: no recipe for role {role!r} in study.mixtures")
        for i, method in enumerate(STUDY[table]["methods"]):
            if method not in UNTUNED + ("*",) and method not in available_methods():
                errors.append(f"study.{table}.methods[{i}]: unknown method {method!r} (no {methods_dir()}/{method}.yaml)")
    for name, spec in config["mixtures"].items():
        try:
            validate_spec(name, spec)
        except ValueError as err:
            errors.append(f"mixtures.{name}: {err}")
    for method, overrides in config["method_overrides"].items():
        try:
            resolve_method(method, overrides)
        except ValueError as err:
            errors.append(f"method_overrides.{method}: {err}")
    for i, search in enumerate(STUDY["grid"]["searches"]):
        try:
            resolve_method(search["method"], {k: v[0] for k, v in search.items() if k != "method"})
        except ValueError as err:
            errors.append(f"study.grid.searches[{i}]: {err}")
    if errors:
        raise ValueError("invalid config:\n  " + "\n  ".join(errors))


check_references()


def parse_hp(tag):
    """'lr=0.0001,r=16' -> {'lr': 0.0001, 'r': 16}; 'default' -> {}."""
    if tag == "default":
        return {}
    pairs = (item.partition("=") for item in tag.split(","))
    return {key: json.loads(value) for key, _, value in pairs}


def grid_points(method):
    """Hyperparameter tags of the Figure 4 grid for `method`. Each search in `study.grid.searches`
    is a product of value lists (e.g. lr x r, then weight decay alone, as in Appendix A);
    hyperparameters a search leaves out keep their defaults."""
    tags = []
    for search in STUDY["grid"]["searches"]:
        if search["method"] != method:
            continue
        space = {k: v for k, v in search.items() if k != "method"}
        keys = sorted(space)
        for values in itertools.product(*(space[k] for k in keys)):
            tag = ",".join(f"{k}={json.dumps(v)}" for k, v in zip(keys, values))
            tags += [tag] if tag not in tags else []
    return tags


def grid_inputs(wildcards):
    grid = STUDY["grid"]
    methods = dict.fromkeys(search["method"] for search in grid["searches"])
    return [f"{RESULTS}/evals/{model}/{grid['mixture']}/{method}/{hp}/seed{seed}/index.json"
            for model in grid["models"] for method in methods
            for hp in grid_points(method) for seed in STUDY["seeds"]]


def table_methods(table):
    """The table's methods, with "*" standing for every method file the config does not list
    (config/methods/*.yaml): quantized ones join Table 2, the others Table 1. Adding a baseline
    is then one YAML file."""
    listed = STUDY[table]["methods"]
    if "*" not in listed:
        return listed
    named = set(STUDY["table1"]["methods"]) | set(STUDY["table2"]["methods"])
    quantized = table == "table2"
    extra = [m for m in available_methods() if m not in named
             and bool(read_method_file(m).get("defaults", {}).get("quantize")) == quantized]
    return [m for m in listed if m != "*"] + extra


def sft_runs():
    """Training summaries of every SpIEL run of Tables 1 and 2 (Figure 3's parameter ages)."""
    runs = []
    for table in ("table1", "table2"):
        for method in table_methods(table):
            if method in UNTUNED or read_method_file(method)["builder"] != "sft":
                continue
            for role in STUDY[table]["columns"]:
                if STUDY[table]["columns"][role]:
                    runs += [f"{RESULTS}/runs/{model}/{role}/{method}/default/seed{seed}/train_summary.json"
                             for model in STUDY["models"] for seed in STUDY["seeds"]]
    return sorted(set(runs))
