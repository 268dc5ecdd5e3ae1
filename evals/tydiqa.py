"""TyDiQA GoldP: 1-shot per language, 100 per language, 9 languages, SQuAD F1 averaged.

Protocol (open-instruct eval/tydiqa as run by ducdauge/sft-llm):
"{instruction}\n\n{P} {shot passage}\n{Q} {shot question}\n{A} {shot answer}\n\n{P} {passage}\n
{Q} {question}\n{A}" with the language's own instruction and labels; greedy, 50 tokens, stop at a newline; prediction stripped; SQuAD F1 (max
over gold answers) per language, averaged over languages.

Passage truncation (`max_context_tokens`, 1024 as the reference's `--max_context_length 1024`):
the reference encodes each passage (items and shots) with the evaluated model's tokenizer at its
defaults, i.e. WITH special tokens, and when that is longer than the limit replaces the passage by
the decoding of its first `max_context_tokens` ids, again at the defaults (special tokens kept).
We do the same, so for Llama-2 the BOS counts against the limit and a cut passage begins with
the text "<s>" (which the prompt's tokenization then reads as a BOS token), as in the paper's runs.

Subset (the reference's draw, reproduced): one `random.Random(seed)` stream (seed 42); for each
language in the reference's order (`LANGUAGES`: the template order, english first, as sft-llm's
edit of open-instruct; open-instruct itself sorted the languages) take `random.sample` of
`n_per_language` of that language's dev items (in file order) when it has more, else all; then,
continuing the same stream, one `random.sample` of `shots` training examples per language. With
the GoldP dev and train files (or the hub's validation and train splits in file order) this
selects the same items and exemplars as the reference.

Sources: hub `google-research-datasets/tydiqa` config "secondary_task" (validation items, train
shots), or a local GoldP-format JSON (SQuAD layout: data/paragraphs/qas) with `train_path` giving
the shot pool (the reference's setting). Without `train_path` each language's shot comes from the
local file itself, drawn first and excluded from the items (our own mode, no reference analogue).
No package ships TyDiQA, so the packaged source is unavailable and the cell stays empty.
Answer likelihood (evals.answer_likelihood): the first gold answer after the answer label and a
space, as the exemplar shows its answer.
Normalised item schema: {"id", "lang", "context", "question", "answers" [texts]}.
"""
from __future__ import annotations

import random
import re
import string
from collections import Counter
from pathlib import Path

from evals.data import DataUnavailable
from evals.sources import hub_rows, local_rows, require, source_of

NAME = "tydiqa"
METRIC = "f1"
HUB_ID = "google-research-datasets/tydiqa"
DEFAULTS = {"n_per_language": 100, "shots": 1, "max_new_tokens": 50, "max_context_tokens": 1024,
            "seed": 42}
SUBSET_KEY = "n_per_language"
UNAVAILABLE = "no TyDiQA data: set evals.tydiqa.path or use the hub"
# (instruction, passage label, question label, answer label), as open-instruct; the key order is
# the reference's language order (LANGUAGES).
TEMPLATES = {
    "english": ("Answer the following question based on the information in the given passage.", "Passage:", "Question:", "Answer:"),
    "arabic": ("أجب على السؤال التالي بناءً على المعلومات في المقطع المعطى.", "المقطع:", "السؤال:", "الإجابة:"),
    "bengali": ("প্রদত্ত অধ্যায়ের তথ্যের উপর ভিত্তি করে নিম্নলিখিত প্রশ্নের উত্তর দিন।", "অধ্যায়:", "প্রশ্ন:", "উত্তর:"),
    "finnish": ("Vastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.", "Kappale:", "Kysymys:", "Vastaus:"),
    "indonesian": ("Jawab pertanyaan berikut berdasarkan informasi di bagian yang diberikan.", "Bagian:", "Pertanyaan:", "Jawaban:"),
    "korean": ("주어진 문단의 정보에 기반하여 다음 질문에 답하십시오.", "문단:", "질문:", "답변:"),
    "russian": ("Ответьте на следующий вопрос на основе информации в данном отрывке.", "Отрывок:", "Вопрос:", "Ответ:"),
    "swahili": ("Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.", "Kifungu:", "Swali:", "Jibu:"),
    "telugu": ("ఇచ్చిన పేరాలోని సమాచారం ఆధారంగా కింది ప్రశ్నకు సమాధానం ఇవ్వండి.", "పేరా:", "ప్రశ్న:", "సమాధానం:"),
}
LANGUAGES = tuple(TEMPLATES)


def _normalise(qa: dict, context: str, where: str) -> dict:
    require(qa, ("id", "question", "answers"), where)
    answers = qa["answers"]
    texts = answers["text"] if isinstance(answers, dict) else [a["text"] for a in answers]
    lang = qa["id"].split("-")[0]
    if lang not in TEMPLATES:
        raise ValueError(f"{where}: id {qa['id']!r} does not start with one of {sorted(TEMPLATES)}")
    if not texts:
        raise ValueError(f"{where}: question {qa['id']} has no answers (GoldP always has one)")
    return {"id": qa["id"], "lang": lang, "context": context, "question": qa["question"],
            "answers": list(texts)}


def _goldp_file(path: Path) -> list[dict]:
    """Items of a GoldP (SQuAD-layout) JSON file."""
    items = []
    for a, article in enumerate(local_rows(path)):
        for p, para in enumerate(article.get("paragraphs", [])):
            for q, qa in enumerate(para.get("qas", [])):
                items.append(_normalise(qa, para["context"], f"{path} data[{a}].paragraphs[{p}].qas[{q}]"))
    if not items:
        raise ValueError(f"{path}: no questions found (expected data/paragraphs/qas)")
    return items


def _hub_split(hub_id: str, split: str) -> list[dict]:
    return [_normalise(r, r["context"], f"{hub_id} {split} row {i}")
            for i, r in enumerate(hub_rows(hub_id, "secondary_task", split))]


def _draw_items(items: list[dict], n: int | None, rng: random.Random) -> list[int]:
    """Positions of the reference's per-language draw from `rng` (languages in LANGUAGES order)."""
    chosen = []
    for lang in LANGUAGES:
        positions = [i for i, x in enumerate(items) if x["lang"] == lang]
        if n is not None and len(positions) > n:
            positions = rng.sample(positions, n)
        chosen += positions
    return chosen


def _pick_shots(pool: list[dict], langs: list[str], n: int, rng: random.Random) -> dict[str, list[dict]]:
    shots = {}
    for lang in sorted(langs, key=LANGUAGES.index):
        candidates = [x for x in pool if x["lang"] == lang]
        if len(candidates) < n:
            raise ValueError(f"tydiqa: only {len(candidates)} shot candidates for {lang}, need {n}")
        shots[lang] = rng.sample(candidates, n)
    return shots


def _n_per_language(cfg: dict) -> int | None:
    return cfg.get("n_per_language", DEFAULTS["n_per_language"])


def load(cfg: dict, cache_dir: Path) -> tuple[list[dict], dict, dict]:
    """(items, {lang: shots}, origin); raises DataUnavailable for the packaged source."""
    source = source_of(NAME, cfg)
    seed, n_shots = cfg.get("seed", DEFAULTS["seed"]), cfg.get("shots", DEFAULTS["shots"])
    if source == "packaged":
        raise DataUnavailable(UNAVAILABLE)
    if source == "hub":
        hub_id = cfg.get("hub_id", HUB_ID)
        items, pool = _hub_split(hub_id, "validation"), _hub_split(hub_id, "train")
        origin = {"hub_id": hub_id, "config": "secondary_task", "split": "validation"}
    elif cfg.get("train_path"):
        items, pool = _goldp_file(Path(cfg["path"])), _goldp_file(Path(cfg["train_path"]))
        origin = {"path": str(cfg["path"]), "train_path": str(cfg["train_path"])}
    else:
        items = _goldp_file(Path(cfg["path"]))
        shots = _pick_shots(items, sorted({x["lang"] for x in items}), n_shots, random.Random(seed))
        used = {s["id"] for lang_shots in shots.values() for s in lang_shots}
        items = [x for x in items if x["id"] not in used]
        return items, shots, {"path": str(cfg["path"]), "train_path": None}
    rng = random.Random(seed)
    _draw_items(items, _n_per_language(cfg), rng)  # the items come first in the reference's stream
    return items, _pick_shots(pool, sorted({x["lang"] for x in items}), n_shots, rng), origin


def select(items: list[dict], cfg: dict) -> list[int]:
    """The reference's draw: per language in LANGUAGES order, one seeded stream (see docstring)."""
    return _draw_items(items, _n_per_language(cfg), random.Random(cfg.get("seed", DEFAULTS["seed"])))


def truncate(context: str, tokenizer, max_tokens: int) -> str:
    """The reference's cut: encode and decode at the tokenizer's defaults (special tokens in)."""
    ids = tokenizer.encode(context)
    return context if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def render_prompt(item: dict, shots: list[dict]) -> str:
    instruction, p, q, a = TEMPLATES[item["lang"]]
    prompt = instruction + "\n\n"
    if shots:
        prompt += "\n\n".join(f"{p} {s['context']}\n{q} {s['question']}\n{a} {s['answers'][0]}"
                              for s in shots) + "\n\n"
    return prompt + f"{p} {item['context']}\n{q} {item['question']}\n{a}"


def build_docs(items: list[dict], fewshot: dict, cfg: dict, tokenizer) -> list[dict]:
    max_tokens = cfg.get("max_context_tokens", DEFAULTS["max_context_tokens"])
    n_shots = cfg.get("shots", DEFAULTS["shots"])

    def cut(x: dict) -> dict:
        return {**x, "context": truncate(x["context"], tokenizer, max_tokens)}

    return [{**item, "prompt": render_prompt(cut(item), [cut(s) for s in fewshot[item["lang"]][:n_shots]])}
            for item in items]


def reference_answer(doc: dict) -> str:
    return " " + doc["answers"][0]


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation (TyDiQA GoldP is scored with the SQuAD script): lowercase
    (Unicode-aware), drop ASCII punctuation, drop English articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def score(doc: dict, outputs: list[str]) -> dict:
    prediction = outputs[0].strip()
    best = max(f1(prediction, gold) for gold in doc["answers"])
    return {"output": outputs[0], "target": doc["answers"], "extracted": prediction,
            "f1": best, "correct": best == 1.0, "lang": doc["lang"]}


def breakdown(records: list[dict]) -> dict[str, float]:
    by_lang: dict[str, list[float]] = {}
    for r in records:
        by_lang.setdefault(r["lang"], []).append(r["f1"])
    return {lang: sum(v) / len(v) for lang, v in sorted(by_lang.items())}


def aggregate(records: list[dict]) -> float:
    """Mean over languages of the per-language mean F1 (0-1, like every score of this suite)."""
    scores = breakdown(records)
    return sum(scores.values()) / len(scores) if scores else float("nan")


def generation(cfg: dict) -> dict:
    return {"until": ["\n"], "do_sample": False,
            "max_gen_toks": cfg.get("max_new_tokens", DEFAULTS["max_new_tokens"])}
