"""lm-eval entry points (`!function hooks.*` in the task YAMLs) that delegate to evals.<benchmark>.

lm-eval imports this file by path, so it holds no logic: scoring lives in the benchmark modules,
where the tests exercise it. Each per-doc metric value is a record dict (output, extracted answer,
correctness), which lm-eval keeps in its sample log, and the aggregation reduces the records.
"""
from evals import gsm


def process_gsm(doc, results):
    return {gsm.METRIC: gsm.score(doc, results)}


def aggregate_gsm(records):
    return gsm.aggregate(records)
