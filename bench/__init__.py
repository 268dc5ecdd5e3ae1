"""Benchmarks of the sparse fine-tuning library: ``python -m bench.kernels``, ``python -m bench.step``.

Scripts, not tests: they print side-by-side timings measured in one run (contenders interleaved,
medians over repeats) so ratios stay meaningful on a shared, busy machine.
"""
