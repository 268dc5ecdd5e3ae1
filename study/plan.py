"""What a config asks the DAG to build: runs, evaluations, table inputs, grid points, Table 3
measurements. Pure functions of the validated config and the method files, so that the
Snakemake rules stay thin and the plan is testable without Snakemake. The config checks the
schema cannot express are study.checks'.

Data flows one way: config -> prepared model and data -> runs/<run>/ (train) -> evals/<run>/
-> tables and figures (artifacts.layout names every path).
"""
from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

from analysis.results import better_direction
from artifacts.layout import DEFAULT_HP, NO_MIXTURE, Layout, Run
from baselines.checks import SETTING_SOURCE
from baselines.config import available_methods, method_facts, methods_dir, resolve_method, run_plan
from evals.data import BENCHMARKS
from finetune.profiling.spec import spec_defaults
from finetune.train_config import resolve_train_cfg

# "<bench>_bpb": the answer likelihood of <bench>'s reference answers (evals.answer_likelihood)
ANSWER_LIKELIHOODS = [f"{b}_bpb" for b in BENCHMARKS]
EVALUATIONS = [*BENCHMARKS, *ANSWER_LIKELIHOODS]
ROLES = ["flan", "single", "mix"]
TABLES = ("table1", "table2")

# Table 3 settings that are the DAG's, not one measurement's (MeasureSpec owns the rest).
PROFILE_DEFAULTS = {
    "methods": ["lora", "sft-ag", "sft-ma"],
    "activation_checkpointing": [False, True],
    "memory_granularity_gib": 1.0, "oom_retries": 1, "timeout_s": 1800,
    "resources": {"threads": 2, "mem_mb": 12000, "runtime": 60, "gpu": 0},
}


def parse_hp(tag: str) -> dict:
    """'lr=0.0001,r=16' -> {'lr': 0.0001, 'r': 16}; 'default' -> {}."""
    if tag == DEFAULT_HP:
        return {}
    pairs = (item.partition("=") for item in tag.split(","))
    return {key: json.loads(value) for key, _, value in pairs}


def hp_tag(values: dict) -> str:
    return ",".join(f"{k}={json.dumps(values[k])}" for k in sorted(values))


# What the resolver reads from Table 4 (study.collect.table4_from_grid writes it).
GRID_TABLE_COLUMNS = ("model", "method_id", "hp", "score")


def grid_winner(table_csv: Path | str, model: str, method: str) -> dict | None:
    """Table 4's row for (model, method): its best grid point's tag (`hp`) and dev score (`score`);
    None where the table has no row for it (every grid point of it failed or has no score)."""
    path = Path(table_csv)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in GRID_TABLE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not this harness's Table 4: no column {missing} "
                             f"(columns: {reader.fieldnames})")
        rows = [row for row in reader if row["model"] == model and row["method_id"] == method]
    if len(rows) > 1:
        raise ValueError(f"{path}: {len(rows)} rows for ({model}, {method}); "
                         "Table 4 has one per model and method")
    if rows and not parse_hp(rows[0]["hp"]):
        raise ValueError(f"{path}: the row for ({model}, {method}) names no grid point "
                         f"(hp {rows[0]['hp']!r})")
    return rows[0] if rows else None


class Plan:
    def __init__(self, config: dict):
        self.config = config
        self.study = config["study"]
        self.layout = Layout(config["results_dir"])

    # --- the hub -------------------------------------------------------------------------------
    def hub_path(self, repo_id: str) -> str:
        """Where a hub repository is read from: its id, or with `hub_mirror` set (the paper
        profile's rehearsal) a local folder laid out like the hub, `<hub_mirror>/<repo id>`."""
        mirror = self.config.get("hub_mirror")
        return f"{mirror}/{repo_id}" if mirror else repo_id

    def hub_marker(self, repo_id: str) -> str:
        """The download rule's output for a hub model: compute jobs wait for it, then read the
        model from the hub cache (or the mirror) with the hub offline. It lives with the results,
        so that a rehearsal's marker (the mirror) never stands for the real download."""
        return f"{self.config['results_dir']}/downloads/{repo_id.replace('/', '--')}.json"

    def mirror_inputs(self) -> list[str]:
        """With `hub_standins` (the rehearsal), every reader of the hub waits for the DAG to
        write the stand-in mirror; a real mirror is simply read."""
        mirror = self.config.get("hub_mirror")
        if self.config.get("hub_standins") and not mirror:
            raise ValueError("hub_standins: true needs hub_mirror, the folder to write them to")
        return [f"{mirror}/.complete"] if mirror and self.config.get("hub_standins") else []

    def hub_models(self) -> list[str]:
        """Hub model repositories this config trains or evaluates: the models of the study, the
        grid and Table 3, and the released models some method files evaluate instead."""
        names = set(self.study["models"]) | set(self.study["grid"]["models"])
        names |= set(self.profile_settings()["models"])
        repos = {self.config["models"][n]["hub"] for n in names if "hub" in self.config["models"][n]}
        for table in TABLES:
            for model in self.study["models"]:
                for method, pairs in self.planned_runs(table).items():
                    for role, _ in pairs:
                        kind, value = self.run_kind(model, method, role)
                        repos |= {value} if kind == "released" else set()
        return sorted(repos)

    def models_as_read(self) -> dict[str, dict]:
        """The `models` catalogue with each hub id as it is read: through the mirror, where one
        is set (the rehearsal's stand-ins are no published model)."""
        return {name: ({**entry, "hub": self.hub_path(entry["hub"])} if "hub" in entry else entry)
                for name, entry in self.config["models"].items()}

    # --- models, mixtures, methods -------------------------------------------------------------
    def model_path(self, name: str) -> str:
        entry = self.config["models"][name]
        return self.hub_path(entry["hub"]) if "hub" in entry else f"{self.config['cache_dir']}/models/{name}"

    def model_inputs(self, name: str) -> list[str]:
        """A packaged model is prepared once into the cache; a hub model is downloaded once."""
        entry = self.config["models"][name]
        return [self.hub_marker(entry["hub"])] if "hub" in entry else [f"{self.model_path(name)}/config.json"]

    def run_kind(self, model: str, method: str, role: str) -> tuple[str, str | None]:
        """("train", None), ("released", hub id) or ("not_run", reason), from the method file."""
        if role == NO_MIXTURE:
            return "train", None
        return run_plan(method, self.model_size(model), role)

    def eval_model_path(self, run: Run) -> str:
        """The model an evaluation loads: a released model where the method file says so."""
        kind, value = self.run_kind(run.model, run.method, run.mixture)
        return self.hub_path(value) if kind == "released" else self.model_path(run.model)

    def eval_model_inputs(self, run: Run) -> list[str]:
        kind, value = self.run_kind(run.model, run.method, run.mixture)
        return [self.hub_marker(value)] if kind == "released" else self.model_inputs(run.model)

    def is_trained(self, run: Run) -> bool:
        return (run.mixture != NO_MIXTURE and not method_facts(run.method)["untuned"]
                and self.run_kind(run.model, run.method, run.mixture)[0] == "train")

    def bench_config(self, bench: str, split: str = "test") -> dict:
        """A benchmark's config, its hub dataset read through the mirror where one is set;
        without `bpb_items`, which sizes only the answer-likelihood items (`bpb_items`)."""
        cfg = {k: v for k, v in self.config["evals"][bench].items() if k != "bpb_items"}
        if split != "test":
            cfg["split"] = split
        if cfg.get("source") == "hub" and self.config.get("hub_mirror"):
            cfg["hub_id"] = self.hub_path(cfg.get("hub_id", import_module(f"evals.{bench}").HUB_ID))
        return cfg

    def mixture_catalogue(self) -> dict[str, dict]:
        """The `mixtures` recipes, hub datasets read through the mirror where one is set."""
        return {name: ({**spec, "hub_id": self.hub_path(spec["hub_id"])} if spec.get("hub_id") else spec)
                for name, spec in self.config["mixtures"].items()}

    def model_size(self, name: str) -> str:
        return self.config["models"][name]["size"]

    def mixture_spec(self, role: str) -> dict:
        """The study maps each mixture role (flan, single, mix) to a named recipe in `mixtures`."""
        return self.mixture_catalogue()[self.study["mixtures"][role]]

    def method_overrides(self, method: str, hp: str) -> dict:
        return {**self.config["method_overrides"].get(method, {}), **parse_hp(hp)}

    def base_method(self, run: Run) -> dict:
        """The method a run trains before any grid winner (method file < model size < config
        overrides < grid tag), or for a released model what evaluation loads."""
        kind, value = self.run_kind(run.model, run.method, run.mixture)
        if kind == "released":
            return {"name": run.method, "builder": "untuned", "released": value,
                    "model_size": self.model_size(run.model)}
        return resolve_method(run.method, self.method_overrides(run.method, run.hp),
                              self.model_size(run.model))

    def resolved_method(self, run: Run, grid_table: Path | str | None = None) -> dict:
        """What `runs/<run>/method.json` holds: base_method, and for a run that takes the grid's
        winner (takes_grid_winner) the winning point's hyperparameters from `grid_table` (Table
        4) on top of the config's overrides, exactly as that point trained; `setting_source`
        says where the setting came from.

        A covered (model, method) without a scored grid point (every point failed) trains the
        method's defaults, and says so: like any failure, it leaves the rest of the table
        intact, and its row's setting column shows that its setting was not searched."""
        if not self.takes_grid_winner(run):
            return {**self.base_method(run), SETTING_SOURCE: self._default_setting(run)}
        if grid_table is None:
            raise ValueError(f"{run.key} trains with the grid's winner for ({run.model}, {run.method}): "
                             f"it needs Table 4 ({self.layout.grid_table()})")
        winner = grid_winner(grid_table, run.model, run.method)
        if winner is None:
            setting = {"summary": "method defaults (grid found no winner)",
                       "detail": f"{self._defaults_detail(run)}: {grid_table} has no scored grid point for "
                                 f"({run.model}, {run.method}) (every point failed or has no score)"}
            return {**self.base_method(run), SETTING_SOURCE: setting}
        point = parse_hp(winner["hp"])
        where = f"{grid_table}: winner {winner['hp']} of ({run.model}, {run.method})"
        resolved = resolve_method(run.method, {**self.method_overrides(run.method, run.hp), **point},
                                  self.model_size(run.model), sources={k: where for k in point})
        score = self.study["grid"]["score"]
        setting = {"summary": ", ".join(f"{k} {v}" for k, v in point.items()) + " (grid)",
                   "detail": f"grid: {grid_table}, best dev score {score} {float(winner['score']):.4g} "
                             f"({better_direction(score)} is better) at {winner['hp']}"}
        return {**resolved, SETTING_SOURCE: setting}

    def _defaults_detail(self, run: Run) -> str:
        overridden = sorted(self.config["method_overrides"].get(run.method, {}))
        return (f"{methods_dir()}/{run.method}.yaml at size {self.model_size(run.model)}"
                + (f" + method_overrides.{run.method} ({', '.join(overridden)})" if overridden else ""))

    def _default_setting(self, run: Run) -> dict:
        """`setting_source` of a run that takes no grid winner: a grid point, an untuned or a
        released model, or a table run of a method the grid does not search here."""
        kind, value = self.run_kind(run.model, run.method, run.mixture)
        path = f"{methods_dir()}/{run.method}.yaml"
        if kind == "released":
            return {"summary": f"released model {value}",
                    "detail": f"{path}: released.{self.model_size(run.model)}.{run.mixture}"}
        if method_facts(run.method)["untuned"]:
            return {"summary": "untuned", "detail": f"{path}: builder untuned"}
        if run.hp != DEFAULT_HP:
            return {"summary": f"grid point {run.hp}",
                    "detail": f"{self._defaults_detail(run)} + grid point {run.hp}"}
        searched = run.model in self.study["grid"]["models"] and run.method in self.searched_methods()
        why = "grid winners off" if searched else "no grid"
        given = "method defaults + method_overrides" if self.config["method_overrides"].get(run.method) \
            else "method defaults"
        return {"summary": f"{given} ({why})",
                "detail": f"{self._defaults_detail(run)} ("
                          + ("study.grid.apply_winners: false" if searched
                             else f"no grid search for {run.method} on {run.model}") + ")"}

    def table_methods(self, table: str, with_unreadable: bool = False) -> list[str]:
        """The table's methods, with "*" standing for every method file the config does not list
        whose `table` is this one: adding a baseline is then one YAML file. With
        `with_unreadable` (study.checks), "*" also stands for every method file that cannot be
        read, so that its errors are reported."""
        listed = self.study[table]["methods"]
        if "*" not in listed:
            return list(listed)
        named = {m for t in TABLES for m in self.study[t]["methods"]}
        number = TABLES.index(table) + 1

        def joins(method):
            try:
                return method_facts(method)["table"] == number
            except ValueError:
                if with_unreadable:
                    return True
                raise

        extra = [m for m in available_methods() if m not in named and joins(m)]
        return [m for m in listed if m != "*"] + extra

    def job_resources(self, rule: str, model: str, method: str) -> dict:
        """`resources.<rule>`, then `resources.per_method.<method>.<rule>`, then
        `resources.per_method.<method>@<model size>.<rule>` (7b FullFT is not a LoRA job).
        With `mem_from_cost_model: true` a GPU training job also gets `gpu_mem_mb`, the GPU
        memory the cost model predicts for it (`train_gpu_mem_mb`), for a profile to pick a GPU
        with; methods the model does not cover keep the configured resources only."""
        per = self.config["resources"].get("per_method", {})
        merged = dict(self.config["resources"][rule])
        for key in (method, f"{method}@{self.model_size(model)}"):
            merged.update(per.get(key, {}).get(rule, {}))
        if merged.pop("mem_from_cost_model", False) and rule == "train" and merged.get("gpu", 0) > 0:
            need = self.train_gpu_mem_mb(model, method)
            if need is not None:
                merged["gpu_mem_mb"] = need
        return merged

    def train_gpu_mem_mb(self, model: str, method: str) -> int | None:
        """GPU memory (MB) of one training process of `method` on `model`, from the cost model
        (analysis.cost_model: the peak, the allocator's overhead and the CUDA context) at the
        config's batch size per device, max_length and checkpointing; None for a method the
        model does not cover (full fine-tuning, (IA)3, ...)."""
        from analysis.cost_model import Method, Setup, load_shape, predict

        resolved = resolve_method(method, self.method_overrides(method, DEFAULT_HP), self.model_size(model))
        try:
            cost_method = Method.from_resolved(resolved)
        except ValueError:
            return None
        train = resolve_train_cfg(self.config["train"])
        checkpointing = resolved.get("activation_checkpointing", train["activation_checkpointing"])
        setup = Setup(int(train["batch_size"]), int(train["max_length"]), bool(checkpointing), "cuda")
        return math.ceil(predict(load_shape(self.model_path(model)), cost_method, setup).gpu_total_gib * 1024)

    # --- runs and evaluations ------------------------------------------------------------------
    def planned_columns(self, table: str) -> list[tuple[str, str]]:
        return [(r, b) for r, bs in self.study[table]["columns"].items() for b in bs]

    def planned_runs(self, table: str) -> dict[str, list[tuple[str, str]]]:
        """{method: [(mixture role, benchmark), ...]} that this config evaluates for `table`."""
        pairs = self.planned_columns(table)
        return {m: pairs for m in self.table_methods(table)}

    def table_run(self, model: str, role: str, method: str, seed: int) -> Run:
        mixture = NO_MIXTURE if method_facts(method)["untuned"] else role
        return Run(model, mixture, method, DEFAULT_HP, seed)

    def table_cell_source(self, model: str, role: str, method: str, seed: int):
        """Where a table cell comes from: a run's evaluation index, or the reason it is empty."""
        kind, value = self.run_kind(model, method, role)
        if kind == "not_run":
            return value
        return self.layout.eval_index(self.table_run(model, role, method, seed))

    def table_inputs(self, table: str) -> list[str]:
        sources = {self.table_cell_source(model, role, method, seed)
                   for model in self.study["models"]
                   for method, pairs in self.planned_runs(table).items()
                   for role, _ in pairs for seed in self.study["seeds"]}
        return sorted(str(s) for s in sources if not isinstance(s, str))

    def table_columns(self) -> list[tuple[str, str]]:
        """(mixture role, benchmark) pairs that some table asks for."""
        pairs = []
        for table in TABLES:
            pairs += [p for p in self.planned_columns(table) if p not in pairs]
        return pairs

    def method_columns(self, method: str) -> list[tuple[str, str]]:
        """(mixture role, benchmark) pairs of the tables that list `method`: a method of Table 1
        alone is not scored on Table 2's columns (its Flan-style held-out loss, ~80 s a run at
        512 examples on 2 cores). A method no table lists gets every column."""
        pairs = []
        for table in TABLES:
            if method in self.table_methods(table):
                pairs += [p for p in self.planned_columns(table) if p not in pairs]
        return pairs or self.table_columns()

    def evaluations_for(self, mixture: str, hp: str = DEFAULT_HP,
                        method: str | None = None) -> tuple[list[str], list[str]]:
        """(benchmarks, held-out roles) a run is evaluated on. A tuned run: its mixture's
        columns in the tables that list its method (every table's without `method`); an
        untuned model (mixture "none"): all those columns; a grid point: its dev score."""
        pairs = self.method_columns(method) if method else self.table_columns()
        if hp != DEFAULT_HP:
            pairs = [(mixture, self.study["grid"]["score"])]
        elif mixture != NO_MIXTURE:
            pairs = [(role, b) for role, b in pairs if role == mixture]
        benches = sorted({b for _, b in pairs if b in EVALUATIONS}, key=EVALUATIONS.index)
        roles = sorted({role for role, b in pairs if b == "heldout_loss"}, key=ROLES.index)
        return benches, roles

    def eval_split(self, hp: str) -> str:
        """The split a run is scored on: a grid point's is `study.grid.split`, a table's test."""
        return self.study["grid"].get("split", "test") if hp != DEFAULT_HP else "test"

    def bench_data(self, bench: str, hp: str = DEFAULT_HP) -> str:
        """The prepared items a run reads: <bench>.jsonl (test), <bench>.<split>.jsonl else; for
        "<bench>_bpb", <bench>.bpb.jsonl where `evals.<bench>.bpb_items` sizes its own subset,
        else the accuracy items (answer likelihoods are table columns: test split)."""
        if bench in ANSWER_LIKELIHOODS:
            base = bench.removesuffix("_bpb")
            name = f"{base}.bpb" if "bpb_items" in self.config["evals"][base] else base
        else:
            split = self.eval_split(hp)
            name = bench if split == "test" else f"{bench}.{split}"
        return f"{self.config['results_dir']}/data/evals/{name}.jsonl"

    def bpb_items(self, bench: str) -> dict | None:
        """The answer-likelihood subset of `bench` as prepare_benchmark's `select_cfg`
        ({its subset key: evals.<bench>.bpb_items}), or None: the accuracy items."""
        cfg = self.config["evals"][bench]
        if "bpb_items" not in cfg:
            return None
        from evals.data import subset_key

        return {subset_key(bench): cfg["bpb_items"]}

    def eval_data(self, mixture: str, hp: str, method: str | None = None) -> dict[str, str]:
        """Each evaluation of a run (benchmark or "<bench>_bpb") -> the items file it reads."""
        return {b: self.bench_data(b, hp) for b in self.evaluations_for(mixture, hp, method)[0]}

    def eval_settings(self, mixture: str, hp: str, method: str | None = None) -> dict[str, dict]:
        """Each evaluation's config for a run: its benchmark's, with the split it is scored on."""
        return {b: (self.bench_config(b.removesuffix("_bpb")) if b in ANSWER_LIKELIHOODS
                    else self.bench_config(b, self.eval_split(hp)))
                for b in self.evaluations_for(mixture, hp, method)[0]}

    def sft_runs(self) -> list[str]:
        """Training summaries of every SpIEL run of Tables 1 and 2 (Figure 3's parameter ages)."""
        runs = set()
        for table in TABLES:
            for method in self.table_methods(table):
                if resolve_method(method)["builder"] != "sft":
                    continue
                for role, benches in self.study[table]["columns"].items():
                    if benches:
                        runs |= {str(self.layout.summary(Run(model, role, method, DEFAULT_HP, seed)))
                                 for model in self.study["models"] for seed in self.study["seeds"]}
        return sorted(runs)

    # --- the hyperparameter grid (Table 4 / Figure 4) -------------------------------------------
    def grid_search_points(self) -> Iterator[tuple[int, str, dict]]:
        """(search index, method, point) for every point of `study.grid.searches`. Each search
        is a product of value lists (e.g. lr x r, then weight decay alone, as in Appendix A);
        hyperparameters a search leaves out keep their defaults."""
        for i, search in enumerate(self.study["grid"]["searches"]):
            space = {k: v for k, v in search.items() if k != "method"}
            keys = sorted(space)
            for values in itertools.product(*(space[k] for k in keys)):
                yield i, search["method"], dict(zip(keys, values))

    def grid_points(self, method: str) -> list[str]:
        """Hyperparameter tags of the grid for `method`, each once."""
        return list(dict.fromkeys(hp_tag(point) for _, m, point in self.grid_search_points() if m == method))

    def searched_methods(self) -> list[str]:
        return list(dict.fromkeys(search["method"] for search in self.study["grid"]["searches"]))

    def takes_grid_winner(self, run: Run) -> bool:
        """Whether a run trains with the grid's best setting (Table 4): a table run (tag
        "default") of a trained method that the grid searches on this model, unless
        `study.grid.apply_winners` is false. A grid point never does (it is what the winner is
        picked from), so the DAG has no cycle. A table run on the grid's mixture is the winning
        point's run again: it reuses that point's training (training_donors)."""
        grid = self.study["grid"]
        return (grid.get("apply_winners", True) and run.hp == DEFAULT_HP
                and run.model in grid["models"] and run.method in self.searched_methods()
                and self.is_trained(run))

    def training_donors(self, run: Run) -> list[str]:
        """Run folders that may already hold `run`'s training: for a table run that takes the
        grid's winner on the grid's mixture, the grid's points of its (model, method, seed).
        The DAG is fixed before the winner is known, so it offers them all; training reuses the
        one whose fingerprint is its own (finetune.fingerprint.reuse_finished_run), which Table
        4 (this run's input) guarantees has finished."""
        if not self.takes_grid_winner(run) or run.mixture != self.study["grid"]["mixture"]:
            return []
        return [str(self.layout.run_dir(Run(run.model, run.mixture, run.method, hp, run.seed)))
                for hp in self.grid_points(run.method)]

    def method_inputs(self, run: Run) -> list[str]:
        """What resolving a run's method reads: Table 4 where it takes the grid's winner."""
        return [str(self.layout.grid_table())] if self.takes_grid_winner(run) else []

    def grid_inputs(self) -> list[str]:
        grid = self.study["grid"]
        return [str(self.layout.eval_index(Run(model, grid["mixture"], method, hp, seed)))
                for model in grid["models"] for method in self.searched_methods()
                for hp in self.grid_points(method) for seed in self.study["seeds"]]

    # --- Table 3 -------------------------------------------------------------------------------
    def profile_settings(self) -> dict:
        """The `profile` section over its defaults (MeasureSpec's, then the DAG's)."""
        given = self.config.get("profile", {})
        defaults = {**spec_defaults(), **PROFILE_DEFAULTS, "models": self.study["models"]}
        settings = {**defaults, **given}
        settings["resources"] = {**PROFILE_DEFAULTS["resources"], **given.get("resources", {})}
        return settings

    def profile_methods(self) -> list[str]:
        """The measured methods, then the frozen floors they are compared with."""
        methods = list(self.profile_settings()["methods"])
        floors = {method_facts(m)["floor"] for m in methods} - {None} - set(methods)
        return methods + sorted(floors)

    def profile_inputs(self) -> list[str]:
        settings = self.profile_settings()
        return [str(self.layout.profile_record(model, method, ac))
                for model in settings["models"] for method in self.profile_methods()
                for ac in settings["activation_checkpointing"]]
