"""Evaluation suite: MMLU, GSM, BBH, TyDiQA and HumanEval under the paper's (open-instruct) protocol."""
from evals.data import BENCHMARKS, DataUnavailable, prepare_benchmark
from evals.suite import run_suite

__all__ = ["BENCHMARKS", "DataUnavailable", "prepare_benchmark", "run_suite"]
