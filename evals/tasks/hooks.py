"""lm-eval entry points (`!function hooks.*` in the task YAMLs) that delegate to evals.<benchmark>.

lm-eval imports this file by path, so it holds no logic: scoring lives in the benchmark modules,
where the tests exercise it. Each per-doc metric value is a record dict (output, extracted answer,
correctness), which lm-eval keeps in its sample log, and the aggregation reduces the records.
"""
from evals import bbh, gsm, humaneval, mmlu, tydiqa


def process_gsm(doc, results):
    return {gsm.METRIC: gsm.score(doc, results)}


def aggregate_gsm(records):
    return gsm.aggregate(records)


def process_mmlu(doc, results):
    return {mmlu.METRIC: mmlu.score(doc, results)}


def aggregate_mmlu(records):
    return mmlu.aggregate(records)


def process_bbh(doc, results):
    return {bbh.METRIC: bbh.score(doc, results)}


def aggregate_bbh(records):
    return bbh.aggregate(records)


def process_tydiqa(doc, results):
    return {tydiqa.METRIC: tydiqa.score(doc, results)}


def aggregate_tydiqa(records):
    return tydiqa.aggregate(records)


def process_humaneval(doc, results):
    # one request per problem whose n sampled completions the take_first_k filter kept
    (completions,) = results
    return {humaneval.METRIC: humaneval.score(doc, list(completions))}


def aggregate_humaneval(records):
    return humaneval.aggregate(records)
