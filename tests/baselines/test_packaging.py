"""The two distributions: the library `spiel-sft` (sft/pyproject.toml) holds `sft` alone; the
harness `spiel-harness` (pyproject.toml) every other package of the tree, the method files inside
`baselines` (where methods_dir finds them once installed), and depends on the library."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from baselines import available_methods
from baselines.config import _packaged_methods_dir, methods_dir

REPO = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def _pyproject(folder: Path = REPO) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def _setuptools_config() -> dict:
    return _pyproject()["tool"]["setuptools"]


def test_pyproject_lists_every_package_and_ships_the_method_files():
    from setuptools import find_namespace_packages

    config = _setuptools_config()
    tops = sorted(p.parent.name for p in REPO.glob("*/__init__.py")
                  if p.parent.name not in ("tests", "sft"))
    found = {p for p in find_namespace_packages(str(REPO), include=[f"{t}*" for t in tops])
             if "__pycache__" not in p}
    assert set(config["packages"]) == found | {"baselines.method_files"}
    assert config["package-dir"] == {"baselines.method_files": "config/methods"}
    assert "*.yaml" in config["package-data"]["*"]
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_installed_layout_finds_the_shipped_method_files(tmp_path, monkeypatch):
    site = tmp_path / "site-packages" / "baselines"
    shutil.copytree(REPO / "config" / "methods", site / "method_files")
    assert _packaged_methods_dir(site) == site / "method_files"
    assert available_methods(_packaged_methods_dir(site)) == available_methods()
    assert _packaged_methods_dir(REPO / "baselines") == REPO / "config" / "methods"
    monkeypatch.setenv("SFT_METHODS_DIR", str(tmp_path))
    assert methods_dir() == tmp_path


def test_the_harness_depends_on_the_library_and_the_library_on_no_harness_package():
    harness, library = _pyproject(), _pyproject(REPO / "sft")
    assert library["project"]["name"] == "spiel-sft"
    assert any(dep.startswith("spiel-sft") for dep in harness["project"]["dependencies"])
    assert library["tool"]["setuptools"]["packages"] == ["sft"]
    assert "sft" not in harness["tool"]["setuptools"]["packages"]
    # The library ships the project's license, the same text.
    assert (REPO / "sft" / "LICENSE").read_text() == (REPO / "LICENSE").read_text()


def _wheel_contents(project: Path, out: Path) -> tuple[str, list[str]]:
    """Build ``project``'s wheel (offline: setuptools from the test extra) and list it."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(project)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("*.whl")
    return wheel.name, zipfile.ZipFile(wheel).namelist()


def test_each_wheel_holds_its_own_packages(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    name, files = _wheel_contents(REPO / "sft", tmp_path / "library")
    assert name.startswith("spiel_sft-")
    tops = {f.split("/")[0] for f in files}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sft"}
    assert "sft/format.py" in files and "sft/selection.py" in files
    dist_info = next(t for t in tops if t.endswith(".dist-info"))
    assert f"{dist_info}/licenses/LICENSE" in files
    assert not any(f.endswith(("pyproject.toml", "README.md")) for f in files)

    name, files = _wheel_contents(REPO, tmp_path / "harness")
    assert name.startswith("spiel_harness-")
    tops = {f.split("/")[0] for f in files if not f.split("/")[0].endswith(".dist-info")}
    assert "sft" not in tops and "tests" not in tops
    assert tops == {p.split(".")[0] for p in _setuptools_config()["packages"]}
    assert "baselines/method_files/lora.yaml" in files
    assert "artifacts/bigbench/tasks.json.gz" in files  # BBH's offline items, the BIG-bench mixture
