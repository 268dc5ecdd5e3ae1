"""Collect evaluation and profiling results into the paper's tables and figures."""
