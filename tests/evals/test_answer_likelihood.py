"""Answer likelihood ("<bench>_bpb"): bits per byte of the reference answer under the accuracy
evaluation's own prompt, through lm-eval's loglikelihood on the suite's HFLM."""
import json
import math
from pathlib import Path

import pytest
import torch
from test_golden_prompts import BBH_EXPECTED, BBH_INPUT, GSM_EXPECTED, HE_PROMPT, HE_TEST

from artifacts.jsonl import read_jsonl
from evals import prepare_benchmark, run_suite
from evals.answer_likelihood import answer_likelihood, base_benchmark
from evals.data import benchmark_module, read_manifest, subset_key

FIXTURES = Path(__file__).parent / "fixtures"
GSM_SOLUTION = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = "
                "<<48+24=72>>72 clips altogether in May and June.\n#### 72")
GSM_QUESTION = " Tom has 3 apples and buys 4 more. How many apples does he have?\n"


class RecordingLM:
    """Stands in for the HFLM where only the requests matter: records (context, continuation)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.max_length, self.requests = tokenizer, 2048, []

    def loglikelihood(self, requests, disable_tqdm=False):
        self.requests += [r.args for r in requests]
        return [(-1.0, False) for _ in requests]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _prepared(tmp_path, cache_dir, name: str, cfg: dict) -> Path:
    items = tmp_path / "data" / f"{name}.jsonl"
    prepare_benchmark(name, cfg, cache_dir, items)
    return items


def _hand_bits(model, tokenizer, prompt: str, answer: str) -> float:
    """-log2 p(answer tokens | prompt) from the model's logits, the whole text tokenized once and
    split at the prompt's tokens (trailing whitespace of the prompt belongs to the answer)."""
    stripped = prompt.rstrip()
    context = tokenizer(stripped)["input_ids"]
    whole = tokenizer(prompt + answer)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
    return -sum(logprobs[i - 1, whole[i]].item() for i in range(len(context), len(whole))) / math.log(2)


@pytest.mark.parametrize("name", ["gsm", "humaneval"])
def test_bits_per_byte_is_the_hand_computation_from_the_logits(name, tmp_path, cache_dir, tiny_lm):
    model, tokenizer = tiny_lm
    if name == "gsm":
        cfg = {"source": "path", "path": str(_write(tmp_path / "src.jsonl", [
            {"question": GSM_QUESTION, "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}]))}
        prompt, answer = GSM_EXPECTED, " 3 + 4 = 7 So the answer is 7."
    else:  # the prompt ends in "\n": lm-eval scores it with the answer, and so do the bytes
        cfg = {"source": "path", "path": str(_write(tmp_path / "src.jsonl", [
            {"task_id": "X/0", "prompt": HE_PROMPT, "test": HE_TEST, "entry_point": "add",
             "canonical_solution": "    return a + b\n"}]))}
        prompt, answer = HE_PROMPT, "    return a + b\n"
    items = _prepared(tmp_path, cache_dir, name, cfg)
    result = run_suite(model, tokenizer, {f"{name}_bpb": {"batch_size": 2}},
                       {f"{name}_bpb": items}, tmp_path / "out")[f"{name}_bpb"]
    written = json.loads((tmp_path / "out" / f"{name}_bpb.json").read_text())
    assert written == result
    assert set(result) == {"benchmark", "metric", "score", "n_items", "settings", "wall_s", "samples"}
    (sample,) = result["samples"]
    n_bytes = len((prompt[len(prompt.rstrip()):] + answer).encode("utf-8"))
    assert sample["bytes"] == n_bytes == (18 if name == "humaneval" else len(answer))
    assert sample["bits"] == pytest.approx(_hand_bits(model, tokenizer, prompt, answer), rel=1e-4)
    assert result["score"] == pytest.approx(sample["bits"] / sample["bytes"])
    assert (result["benchmark"], result["metric"], result["n_items"]) == (f"{name}_bpb", "bits_per_byte", 1)


def test_prompts_are_the_accuracy_evaluations_and_answers_the_reference_fields(tmp_path, cache_dir, tiny_lm):
    tokenizer = tiny_lm[1]
    cfgs = {
        "gsm": {"source": "path", "path": str(_write(tmp_path / "gsm.src.jsonl", [
            {"question": GSM_QUESTION, "answer": GSM_SOLUTION}]))},
        "bbh": {"source": "path", "tasks": ["sports_understanding"], "path": str(_write(
            tmp_path / "bbh.src.jsonl", [{"task": "sports_understanding", "input": BBH_INPUT,
                                          "target": "no"}]))},
        "mmlu": {"source": "path", "path": str(FIXTURES / "mmlu.jsonl"), "n_items": 1},
        "tydiqa": {"source": "path", "path": str(FIXTURES / "tydiqa_goldp.json"), "n_per_language": 1},
        "humaneval": {"source": "path", "path": str(FIXTURES / "humaneval.jsonl"), "n_items": 1},
    }
    sent = {}
    for name, cfg in cfgs.items():
        lm = RecordingLM(tokenizer)
        items = _prepared(tmp_path, cache_dir, name, cfg)
        result = answer_likelihood(lm, f"{name}_bpb", cfg, items)
        docs = benchmark_module(name).build_docs(  # the accuracy evaluation's prompts
            read_jsonl(items), read_manifest(name, items)["fewshot"], cfg, tokenizer)
        assert [p for p, _ in lm.requests] == [d["prompt"] for d in docs], name
        assert result["score"] == pytest.approx(
            len(lm.requests) / math.log(2) / sum(s["bytes"] for s in result["samples"]))
        sent[name] = lm.requests
    assert sent["gsm"] == [(GSM_EXPECTED, " Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips "
                            "altogether in May and June. So the answer is 72.")]
    assert sent["bbh"] == [(BBH_EXPECTED, " no")]
    mmlu_item = read_jsonl(tmp_path / "data" / "mmlu.jsonl")[0]
    assert sent["mmlu"][0][1] == " " + mmlu_item["answer"] and mmlu_item["answer"] in "ABCD"
    tydiqa_items = read_jsonl(tmp_path / "data" / "tydiqa.jsonl")
    assert [a for _, a in sent["tydiqa"]] == [" " + x["answers"][0] for x in tydiqa_items]
    assert sent["humaneval"] == [('def add(a, b):\n    """Return a + b."""\n', "    return a + b\n")]


def test_the_packaged_humaneval_has_canonical_solutions(tmp_path, cache_dir):
    items = read_jsonl(_prepared(tmp_path, cache_dir, "humaneval", {"source": "packaged", "n_items": 3}))
    assert [x["task_id"] for x in items] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(x["canonical_solution"].startswith("    ") for x in items)


def test_unavailable_data_or_references_give_an_empty_cell_with_a_note(tmp_path, cache_dir, tiny_lm):
    lm = RecordingLM(tiny_lm[1])
    tydiqa = _prepared(tmp_path, cache_dir, "tydiqa", {"source": "packaged"})
    result = answer_likelihood(lm, "tydiqa_bpb", {}, tydiqa)
    assert (result["score"], result["n_items"], result["samples"]) == (None, 0, [])
    assert result["note"] == "no TyDiQA data: set evals.tydiqa.path or use the hub"
    no_solution = _write(tmp_path / "he.jsonl", [{"task_id": "X/0", "prompt": HE_PROMPT,
                                                  "test": HE_TEST, "entry_point": "add"}])
    he = _prepared(tmp_path, cache_dir, "humaneval", {"source": "path", "path": str(no_solution)})
    result = answer_likelihood(lm, "humaneval_bpb", {}, he)
    assert result["score"] is None and "has no canonical_solution" in result["note"]
    assert lm.requests == []


@pytest.mark.parametrize("name, shots", [("gsm", 2), ("mmlu", 5), ("bbh", 3)])
def test_more_answer_likelihood_items_leave_the_accuracy_items_and_prompts_unchanged(
        name, shots, tmp_path, cache_dir, tiny_lm):
    """The bpb subset is drawn with its own size; the exemplars still follow the accuracy config
    (GSM with fewer than 8 shots draws them from the stream that drew the items)."""
    cfg = {"source": "packaged", "shots": shots,
           **({"n_per_task": 1} if name == "bbh" else {"n_items": 3})}
    accuracy = _prepared(tmp_path / "acc", cache_dir, name, cfg)
    again = _prepared(tmp_path / "again", cache_dir, name, cfg)
    bpb = tmp_path / "bpb" / f"{name}.bpb.jsonl"
    manifest = prepare_benchmark(name, cfg, cache_dir, bpb, select_cfg={subset_key(name): 4})
    assert accuracy.read_bytes() == again.read_bytes()
    acc_manifest = json.loads((accuracy.parent / f"{name}.jsonl.manifest.json").read_text())
    assert manifest["fewshot"] == acc_manifest["fewshot"]
    assert manifest["select_overrides"] == {subset_key(name): 4}
    per_group = 4 if name != "bbh" else 4 * len({x["task"] for x in read_jsonl(accuracy)})
    assert len(read_jsonl(bpb)) == per_group > len(read_jsonl(accuracy))
    lm_acc, lm_bpb = RecordingLM(tiny_lm[1]), RecordingLM(tiny_lm[1])
    answer_likelihood(lm_acc, f"{name}_bpb", cfg, accuracy)
    answer_likelihood(lm_bpb, f"{name}_bpb", cfg, bpb)
    by_id = {x["id"]: r for x, r in zip(read_jsonl(bpb), lm_bpb.requests)}
    shared = [(x["id"], r) for x, r in zip(read_jsonl(accuracy), lm_acc.requests) if x["id"] in by_id]
    assert shared and all(by_id[i] == request for i, request in shared)


def test_names():
    assert base_benchmark("gsm_bpb") == "gsm"
    with pytest.raises(ValueError, match="not an answer-likelihood name"):
        base_benchmark("gsm")
