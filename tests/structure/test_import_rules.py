"""The layers of docs/architecture.md, read from the code's own imports (every `import` and
`from ... import`, at module level or inside a function): each top-level folder imports only the
folders its layer may use, so the arrows between folders never run back up or form a cycle."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# folder -> the project folders it may import (docs/architecture.md, "Layers").
ALLOWED = {
    "sft": set(),
    "artifacts": set(),
    "evals": {"artifacts"},
    "analysis": {"artifacts"},
    "baselines": {"sft", "artifacts"},
    "finetune": {"baselines", "evals", "sft", "artifacts"},
    "bench": {"sft"},
    "rehearsal": {"artifacts"},
    "study": {"finetune", "baselines", "evals", "analysis", "artifacts"},
    "workflow": {"study", "finetune", "evals", "analysis", "rehearsal", "artifacts"},
}
PROJECT = set(ALLOWED)


def imported_folders(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & PROJECT


def python_files(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_folder_imports_only_its_lower_layers(folder):
    assert python_files(folder), f"{folder}/ has no Python files"
    wrong = {f"{path.relative_to(ROOT)} imports {name}"
             for path in python_files(folder)
             for name in imported_folders(path) - ALLOWED[folder] - {folder}}
    assert not wrong, "\n".join(sorted(wrong))


def test_the_allowed_arrows_have_no_cycle():
    seen, done = set(), set()

    def visit(node, path):
        assert node not in path, f"cycle: {' -> '.join(path + [node])}"
        if node in done:
            return
        for dep in ALLOWED[node]:
            visit(dep, path + [node])
        done.add(node)

    for folder in ALLOWED:
        visit(folder, [])


def test_every_project_folder_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - {"tests"} <= PROJECT, packages - PROJECT


def test_what_the_dag_imports_while_parsing_is_torch_free():
    """Snakemake imports the plan at every parse: it must not pay for loading torch."""
    code = ("import sys, baselines, study.plan, study.checks, artifacts.layout; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def _sft_module_imports() -> dict[str, set[str]]:
    """module -> the sft modules it imports (relative imports, lazy ones included)."""
    modules = {p.stem for p in (ROOT / "sft").glob("*.py")} - {"__init__"}
    graph = {}
    for name in modules:
        tree = ast.parse((ROOT / "sft" / f"{name}.py").read_text(encoding="utf-8"))
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:  # from . import hub
                    deps |= {alias.name for alias in node.names}
        graph[name] = deps & modules
    return graph


def test_the_library_modules_import_each_other_without_a_cycle():
    """Inside sft/ too the imports run one way (the on-disk format in sft.format serves both
    sft.model and sft.hub, neither of which imports the other back)."""
    graph = _sft_module_imports()
    done: set[str] = set()

    def visit(node, path):
        assert node not in path, f"cycle: {' -> '.join(path + [node])}"
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, path + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert "model" not in graph["hub"] and "model" not in graph["format"]
