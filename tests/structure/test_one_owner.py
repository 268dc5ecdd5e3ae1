"""Each list has one owner; where a second place must spell it (a YAML schema, a layer that may
not import the owner), these tests keep the two equal, so that adding a benchmark, a mixture
role or a builder in one place and forgetting the other fails here, not in a run."""
from pathlib import Path

import yaml

from analysis.tables import BENCHMARK_LABELS, COLUMNS, MIXTURE_LABELS
from evals.data import BENCHMARKS
from study.plan import ANSWER_LIKELIHOODS, ROLES, TABLES

ROOT = Path(__file__).resolve().parents[2]
CONFIG_SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_the_config_schema_names_the_benchmarks_evals_owns():
    evals = CONFIG_SCHEMA["properties"]["evals"]
    assert evals["required"] == list(BENCHMARKS)
    assert list(evals["properties"]) == list(BENCHMARKS)
    study = CONFIG_SCHEMA["properties"]["study"]["properties"]
    assert study["grid"]["properties"]["score"]["enum"] == ["heldout_loss", *BENCHMARKS]
    benchlist = CONFIG_SCHEMA["$defs"]["benchlist"]["items"]["enum"]
    assert benchlist == [*BENCHMARKS, "heldout_loss", *ANSWER_LIKELIHOODS]


def test_the_config_schema_names_the_roles_and_tables_the_plan_owns():
    study = CONFIG_SCHEMA["properties"]["study"]
    assert list(study["properties"]["mixtures"]["properties"]) == list(ROLES)
    assert study["properties"]["grid"]["properties"]["mixture"]["enum"] == list(ROLES)
    assert list(CONFIG_SCHEMA["$defs"]["table"]["properties"]["columns"]["properties"]) == list(ROLES)
    assert [t for t in TABLES if t in study["required"]] == list(TABLES)


def test_analysis_labels_exactly_the_owners_benchmarks_roles_and_tables():
    assert tuple(BENCHMARK_LABELS) == tuple(BENCHMARKS)
    assert list(MIXTURE_LABELS) == list(ROLES)
    assert set(COLUMNS) == set(TABLES)


def test_the_builders_registered_are_the_method_schemas_and_name_themselves():
    """A builder is registered in baselines.registry.BUILDERS; its keys and the name its
    messages use are its own class's; the method schema's enum must list it too."""
    from baselines.builder import Builder
    from baselines.checks import SCHEMA_PATH
    from baselines.registry import BUILDERS

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert sorted(schema["properties"]["builder"]["enum"]) == sorted(BUILDERS)
    assert all(cls.title != Builder.title for cls in BUILDERS.values())


def test_generation_settings_are_the_codes_alone():
    """evals.<bench>.generation sets them at run time (evals.suite): a task YAML's own would be
    overridden every time, a second copy that silently disagrees."""
    for path in sorted((ROOT / "evals" / "tasks").glob("spiel_*.yaml")):
        assert "generation_kwargs" not in yaml.load(path.read_text(), Loader=_IgnoreTags), path


class _IgnoreTags(yaml.SafeLoader):
    """lm-eval's `!function` tags read as plain strings."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_only_the_layout_spells_a_run_folders_file_names():
    """artifacts.layout.RunFolder names the files of runs/<run>/; code handed the folder asks it
    rather than spelling "artifact" or "train_summary.json" again."""
    import ast

    from artifacts.layout import RunFolder

    folder = RunFolder(Path("run"))
    names = {path.name for path in (folder.method, folder.fingerprint, *folder.state())}
    spelled = []
    for package in ("artifacts", "baselines", "evals", "analysis", "finetune", "study", "workflow"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "artifacts" / "layout.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in names:
                    spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not spelled, "\n".join(spelled)
