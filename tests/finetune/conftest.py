"""Fixtures for the harness tests: a tiny Llama saved as an HF folder with a byte-level BPE
tokenizer trained in-test (EOS `<|im_end|>` like SmolLM2), and a small instruction mixture."""
from __future__ import annotations

import pytest

from tiny_fixtures import make_tiny_model_dir, write_mixture


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def mixture_path(tmp_path):
    return write_mixture(tmp_path / "mix.jsonl", n=24)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine oversubscribed
    OpenMP threads make a millisecond step take seconds."""
    import torch

    torch.set_num_threads(1)
