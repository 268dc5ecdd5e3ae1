"""Methods: each is a YAML file in config/methods/ naming the builder that trains it.

This package face is torch-free (what the DAG imports while it parses): reading and resolving
method files and their facts. The builders (baselines.registry) and loading a trained run for
evaluation (baselines.eval_model) import torch; import them where they are used.
See baselines/README.md for the methods and how to add one.
"""
from baselines.config import available_methods, method_facts, read_method_file, resolve_method

__all__ = ["available_methods", "method_facts", "read_method_file", "resolve_method"]
