"""The harness tests' fixtures (tiny model, mixture, one thread) live in tiny_fixtures."""
from tiny_fixtures import _one_thread, mixture_path, tiny_model_dir  # noqa: F401  pytest fixtures
