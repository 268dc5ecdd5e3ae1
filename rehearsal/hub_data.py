"""Offline stand-ins for the paper profile's hub datasets, laid out like the hub repositories.

`write_hub_standins(out_dir)` writes one folder per dataset at `out_dir/<owner>/<name>/`: parquet
files at the paths the hub repository (or its parquet export) uses, and a README.md dataset card
whose YAML header declares `configs:` (config name, data files per split) and `dataset_info:`
(features, split sizes) as `push_to_hub` writes them. So the exact call the harness makes on the
hub, `datasets.load_dataset(<folder>, <config name>, split=...)`, reads the folder offline, with
the hub's column names and feature types (MMLU's `answer` is a ClassLabel, TyDiQA's `answers` a
sequence of {text, answer_start}).

Schemas, from the datasets' cards (see `HUB_DATASETS`):
- allenai/tulu-v2-sft-mixture: dataset, id, messages [{role, content}]; config default, train.
  Conversations are multi-turn (every ShareGPT row, some others) and open_orca's rows start
  with a system message, as in the real mixture.
- ostapeno/tulu_v2_flan_v2_subset: Tulu v2's Flan v2 rows; same columns as the mixture
  (the card could not be read offline; the SpIEL scripts read it through open-instruct's
  `messages` path, which needs exactly these columns).
- vicgalle/alpaca-gpt4: instruction, input, output, text; config default, train.
- cais/mmlu: config "all": question, subject, choices [str], answer ClassLabel(A-D);
  splits test, validation, dev (auxiliary_train is left out: nothing reads it).
- openai/gsm8k: config "main": question, answer (ending "#### N"); train, test.
- SaylorTwift/bbh (what lm-eval 0.4.13 and evals.bbh read): one config per subtask (all 27),
  `<task>/test-00000-of-00001.parquet`, split test: input, target. (The real card also declares
  an older `default` config that nothing reads; it is left out.)
- google-research-datasets/tydiqa: config "secondary_task" (GoldP): id, title, context,
  question, answers {text: [str], answer_start: [int32]}; train, validation.
- openai/openai_humaneval: config "openai_humaneval" (default): task_id, prompt,
  canonical_solution, test, entry_point; test.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from artifacts.atomic import atomic_dir

from rehearsal import corpus
from rehearsal.bbh import bbh_items

SEED = 0
ORCA_SYSTEM = ("You are an AI assistant. User will give you a task. Your goal is to complete the "
               "task as faithfully as you can.")


@dataclass(frozen=True)
class Config:
    """One dataset config: its features and {split: rows}, stored under `folder/`."""

    name: str
    features: dict  # column -> datasets feature (built lazily, see _features)
    splits: dict[str, list[dict]]
    folder: str  # "data" for default configs, else the config name (the hub's layout)
    default: bool = False


@dataclass(frozen=True)
class HubDataset:
    repo_id: str
    configs: list[Config] = field(default_factory=list)
    card: str = ""


def _features():
    from datasets import ClassLabel, List, Sequence, Value

    string = Value("string")
    return {
        "tulu": {"dataset": string, "id": string,
                 "messages": List({"role": string, "content": string})},
        "alpaca": {"instruction": string, "input": string, "output": string, "text": string},
        "mmlu": {"question": string, "subject": string, "choices": List(string),
                 "answer": ClassLabel(names=["A", "B", "C", "D"])},
        "gsm": {"question": string, "answer": string},
        "bbh": {"input": string, "target": string},
        "tydiqa": {"id": string, "title": string, "context": string, "question": string,
                   "answers": Sequence({"text": string, "answer_start": Value("int32")})},
        "humaneval": {"task_id": string, "prompt": string, "canonical_solution": string,
                      "test": string, "entry_point": string},
    }


def _tulu_rows(n: int, seed: int) -> list[dict]:
    """Tulu v2's layout: multi-turn conversations (ShareGPT's always, others now and then),
    system messages where a source has them (open_orca's every row)."""
    sources = ["flan_v2", "cot", "oasst1", "sharegpt", "gpt4_alpaca", "code_alpaca", "lima",
               "wizardlm", "open_orca", "science", "hard_coded"]
    rows = []
    chats = corpus.chats(n, seed)
    flan = corpus.flan_pairs(n, seed + 1)
    for i in range(n):
        source = sources[i % len(sources)]
        if source in ("flan_v2", "cot", "open_orca", "science"):
            prompt, answer = flan[i]
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        else:
            messages = chats[i]
        if source == "open_orca":
            messages = [{"role": "system", "content": ORCA_SYSTEM}, *messages]
        if source == "sharegpt" and sum(m["role"] == "assistant" for m in messages) == 1:
            messages = [*messages, *corpus.chats(1, seed + i)[0][-2:]]
        suffix = f"_{i}" if source != "sharegpt" else f"_{1000 + 37 * i:x}_0"
        rows.append({"dataset": source, "id": f"{source}{suffix}", "messages": messages})
    return rows


def _flan_subset_rows(n: int, seed: int) -> list[dict]:
    return [{"dataset": "flan_v2", "id": f"flan_v2_{i}",
             "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]}
            for i, (p, a) in enumerate(corpus.flan_pairs(n, seed))]


def _alpaca_rows(n: int, seed: int) -> list[dict]:
    return [{**row, "text": corpus.alpaca_text(row)} for row in corpus.instruction_rows(n, seed)]


def hub_datasets(seed: int = SEED, n_train_rows: int = 48) -> list[HubDataset]:
    """Every stand-in, built in memory. `n_train_rows` rows per instruction set: enough for
    the held-out slice (heldout.n_examples) and a few optimizer steps of two epochs."""
    f = _features()
    bbh = bbh_items(seed)
    return [
        HubDataset("allenai/tulu-v2-sft-mixture", [
            Config("default", f["tulu"], {"train": _tulu_rows(n_train_rows, seed)}, "data",
                   default=True)]),
        HubDataset("ostapeno/tulu_v2_flan_v2_subset", [
            Config("default", f["tulu"], {"train": _flan_subset_rows(n_train_rows, seed + 2)},
                   "data", default=True)]),
        HubDataset("vicgalle/alpaca-gpt4", [
            Config("default", f["alpaca"], {"train": _alpaca_rows(n_train_rows, seed + 3)}, "data",
                   default=True)]),
        HubDataset("cais/mmlu", [Config("all", f["mmlu"], corpus.mmlu_items(seed), "all")]),
        HubDataset("openai/gsm8k", [Config("main", f["gsm"], corpus.gsm_items(seed), "main")]),
        HubDataset("SaylorTwift/bbh", [Config(task, f["bbh"], {"test": rows}, task)
                                    for task, rows in sorted(bbh.items())]),
        HubDataset("google-research-datasets/tydiqa", [
            Config("secondary_task", f["tydiqa"], corpus.tydiqa_items(), "secondary_task")]),
        HubDataset("openai/openai_humaneval", [
            Config("openai_humaneval", f["humaneval"], {"test": corpus.humaneval_items()},
                   "openai_humaneval", default=True)]),
    ]


def _card(ds: HubDataset) -> str:
    """README.md with the YAML header `push_to_hub` writes: dataset_info and configs."""
    import yaml
    from datasets import DatasetInfo, Features, NamedSplit, SplitDict, SplitInfo

    infos, configs = [], []
    for cfg in ds.configs:
        splits = SplitDict()
        for split, rows in cfg.splits.items():
            splits.add(SplitInfo(name=str(NamedSplit(split)), num_examples=len(rows)))
        info = DatasetInfo(features=Features(cfg.features), splits=splits)._to_yaml_dict()
        infos.append({"config_name": cfg.name, **info})
        entry = {"config_name": cfg.name,
                 "data_files": [{"split": split, "path": f"{cfg.folder}/{split}-*"}
                                for split in cfg.splits]}
        if cfg.default:
            entry["default"] = True
        configs.append(entry)
    header = yaml.safe_dump({"dataset_info": infos if len(infos) > 1 else infos[0],
                             "configs": configs}, sort_keys=False, allow_unicode=True)
    return (f"---\n{header}---\n\n# Offline stand-in for `{ds.repo_id}`\n\n"
            "Made-up rows in the hub dataset's schema and layout, written by `python -m rehearsal` "
            "for the rehearsal of the paper profile (config/rehearsal.yaml). Not the real data.\n")


def write_dataset(ds: HubDataset, folder: Path) -> Path:
    """Write one stand-in into `folder` (created; existing content is replaced)."""
    import pyarrow.parquet as pq
    from datasets import Dataset, Features

    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    for cfg in ds.configs:
        for split, rows in cfg.splits.items():
            path = folder / cfg.folder / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            # The Arrow table carries the `datasets` features in its schema metadata, as the
            # hub's parquet files do (what makes `answer` load as a ClassLabel).
            table = Dataset.from_list(rows, features=Features(cfg.features)).data.table
            pq.write_table(table, path)
    (folder / "README.md").write_text(_card(ds), encoding="utf-8")
    return folder


def write_hub_standins(out_dir: Path, seed: int = SEED) -> dict[str, Path]:
    """Write every stand-in under `out_dir/<owner>/<name>/`; return {repo id: folder}.

    Each folder is written next to its final place and renamed into it, so a reader never sees
    half a dataset; rerunning rewrites the same rows.
    """
    out_dir = Path(out_dir)
    written = {}
    for ds in hub_datasets(seed):
        final = out_dir / ds.repo_id
        with atomic_dir(final) as tmp:
            write_dataset(ds, tmp)
        written[ds.repo_id] = final
    return written
