"""The wheel: every package of the tree is listed in pyproject.toml, the method files ship inside
`baselines`, and methods_dir finds them where a wheel installs them."""
import shutil
import sys
from pathlib import Path

import pytest

from baselines import available_methods
from baselines.config import _packaged_methods_dir, methods_dir

REPO = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def _setuptools_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_pyproject_lists_every_package_and_ships_the_method_files():
    from setuptools import find_namespace_packages

    config = _setuptools_config()
    tops = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests")
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
