"""The baselines tests share the harness tests' tiny model and mixture builders."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from tiny_fixtures import make_tiny_model_dir, write_mixture  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def mixture_path(tmp_path):
    return write_mixture(tmp_path / "mix.jsonl", n=24)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)
