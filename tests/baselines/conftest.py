"""The baselines tests share the harness tests' fixtures (tiny model, mixture, one thread)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from tiny_fixtures import _one_thread, mixture_path, tiny_model_dir  # noqa: E402, F401  pytest fixtures
