"""Each stand-in loads with the call the hub path makes, with the hub's columns and types."""
from __future__ import annotations

import pytest
import yaml

# (repo id, config, split, {column: feature type name}), from the datasets' cards.
STRING = "Value"
EXPECTED = [
    ("allenai/tulu-v2-sft-mixture", None, "train",
     {"dataset": STRING, "id": STRING, "messages": "List"}),
    ("ostapeno/tulu_v2_flan_v2_subset", None, "train",
     {"dataset": STRING, "id": STRING, "messages": "List"}),
    ("vicgalle/alpaca-gpt4", None, "train",
     {"instruction": STRING, "input": STRING, "output": STRING, "text": STRING}),
    ("cais/mmlu", "all", "test",
     {"question": STRING, "subject": STRING, "choices": "List", "answer": "ClassLabel"}),
    ("cais/mmlu", "all", "dev",
     {"question": STRING, "subject": STRING, "choices": "List", "answer": "ClassLabel"}),
    ("cais/mmlu", "all", "validation",
     {"question": STRING, "subject": STRING, "choices": "List", "answer": "ClassLabel"}),
    ("openai/gsm8k", "main", "test", {"question": STRING, "answer": STRING}),
    ("openai/gsm8k", "main", "train", {"question": STRING, "answer": STRING}),
    ("SaylorTwift/bbh", "boolean_expressions", "test", {"input": STRING, "target": STRING}),
    ("SaylorTwift/bbh", "word_sorting", "test", {"input": STRING, "target": STRING}),
    ("google-research-datasets/tydiqa", "secondary_task", "train",
     {"id": STRING, "title": STRING, "context": STRING, "question": STRING, "answers": "dict"}),
    ("google-research-datasets/tydiqa", "secondary_task", "validation",
     {"id": STRING, "title": STRING, "context": STRING, "question": STRING, "answers": "dict"}),
    ("openai/openai_humaneval", None, "test",
     {"task_id": STRING, "prompt": STRING, "canonical_solution": STRING, "test": STRING,
      "entry_point": STRING}),
    ("openai/openai_humaneval", "openai_humaneval", "test",
     {"task_id": STRING, "prompt": STRING, "canonical_solution": STRING, "test": STRING,
      "entry_point": STRING}),
]


@pytest.mark.parametrize("repo_id,config,split,columns", EXPECTED,
                         ids=[f"{r}:{c}:{s}" for r, c, s, _ in EXPECTED])
def test_load_dataset_reads_the_folder_with_hub_columns(hub, repo_id, config, split, columns):
    import datasets

    ds = datasets.load_dataset(hub(repo_id), config, split=split)
    assert len(ds) >= 3
    assert {k: type(v).__name__ for k, v in ds.features.items()} == columns


def test_cards_declare_configs(standins):
    from rehearsal import HUB_IDS

    for repo_id in HUB_IDS:
        text = (standins / repo_id / "README.md").read_text()
        header = yaml.safe_load(text.split("---\n")[1])
        for cfg in header["configs"]:
            for entry in cfg["data_files"]:
                folder = standins / repo_id / entry["path"].rsplit("/", 1)[0]
                assert list(folder.glob(entry["path"].rsplit("/", 1)[1])), (repo_id, entry)


def test_values_look_like_the_hub(hub):
    import datasets

    from evals.bbh import TASKS

    row = datasets.load_dataset(hub("cais/mmlu"), "all", split="test")[0]
    assert len(row["choices"]) == 4 and row["answer"] in range(4)
    gsm = datasets.load_dataset(hub("openai/gsm8k"), "main", split="test")
    assert all(r["answer"].split("\n")[-1].startswith("#### ") for r in gsm)
    tydi = datasets.load_dataset(hub("google-research-datasets/tydiqa"), "secondary_task",
                                 split="validation")
    assert len({r["id"].split("-")[0] for r in tydi}) >= 5
    for r in tydi:
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert r["context"][start:start + len(text)] == text
    tulu = datasets.load_dataset(hub("allenai/tulu-v2-sft-mixture"), split="train")
    assert {m["role"] for r in tulu for m in r["messages"]} == {"system", "user", "assistant"}
    configs = datasets.get_dataset_config_names(hub("SaylorTwift/bbh"))
    assert sorted(configs) == sorted(TASKS)


def test_humaneval_canonical_solutions_pass_and_empty_ones_fail(hub):
    import datasets

    from evals.sandbox import check_function

    for row in datasets.load_dataset(hub("openai/openai_humaneval"), split="test"):
        def passes(body):
            return check_function(row["prompt"] + body, row["entry_point"], row["test"], row["prompt"],
                                  timeout_s=10.0).passed
        assert passes(row["canonical_solution"]), row["task_id"]
        assert not passes("    return None\n"), row["task_id"]
