"""The stand-ins, built once per session into a temporary folder (a few seconds on one core),
and `datasets` kept offline with its cache in that folder too."""
from __future__ import annotations

import pytest

from artifacts.packaged import default_cache_dir


@pytest.fixture(scope="session")
def standins(tmp_path_factory):
    """The mirror `python -m rehearsal` writes: <owner>/<name>/ for every model and dataset."""
    import datasets.config

    from rehearsal import build_all

    root = tmp_path_factory.mktemp("rehearsal")
    patch = pytest.MonkeyPatch()
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", root / "datasets-cache")
    patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    try:
        yield build_all(root / "standins")
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def hub(standins):
    """repo id -> the stand-in folder that replaces it."""
    return lambda repo_id: str(standins / repo_id)


@pytest.fixture(scope="session")
def cache_dir():
    """The packaged-artifact cache ($SFT_CACHE, else ./.cache): lm-eval few-shot files."""
    return default_cache_dir()
