"""Tiny evaluation directories as study.evaluate writes them: index.json and one result file per
benchmark, each with per-item samples shaped as evals/<bench>.py and finetune.heldout write them."""
import json
from pathlib import Path


def accuracy(bench: str, correct: list[bool], tasks: list[str] | None = None) -> dict:
    """MMLU/GSM (micro accuracy) or BBH (`tasks`: macro over subtasks)."""
    samples = [{"id": f"{bench}-{i}", "correct": bool(c), **({"task": tasks[i]} if tasks else {})}
               for i, c in enumerate(correct)]
    if tasks:
        by = {}
        for s in samples:
            by.setdefault(s["task"], []).append(s["correct"])
        score = sum(sum(v) / len(v) for v in by.values()) / len(by)
    else:
        score = sum(correct) / len(correct)
    return {"benchmark": bench, "score": float(score), "n_items": len(samples), "samples": samples}


def tydiqa(f1: list[float], langs: list[str]) -> dict:
    samples = [{"id": f"ty-{i}", "f1": float(v), "lang": lang, "correct": bool(v == 1.0)}
               for i, (v, lang) in enumerate(zip(f1, langs))]
    by = {}
    for s in samples:
        by.setdefault(s["lang"], []).append(s["f1"])
    return {"benchmark": "tydiqa", "score": sum(sum(v) / len(v) for v in by.values()) / len(by),
            "n_items": len(samples), "samples": samples}


def humaneval(pass_at_1: list[float]) -> dict:
    samples = [{"id": f"HumanEval/{i}", "k": 1, "pass_at": {"1": float(p)}} for i, p in enumerate(pass_at_1)]
    return {"benchmark": "humaneval", "score": sum(pass_at_1) / len(pass_at_1),
            "n_items": len(samples), "samples": samples}


def heldout(nll: list[float], tokens: list[int]) -> dict:
    samples = [{"id": i, "nll": float(n), "tokens": int(t)} for i, (n, t) in enumerate(zip(nll, tokens))]
    return {"benchmark": "heldout_loss", "score": sum(nll) / sum(tokens), "n_items": len(samples),
            "n_tokens": sum(tokens), "samples": samples}


def bpb(bench: str, bits: list[float], nbytes: list[int]) -> dict:
    samples = [{"id": f"{bench}-{i}", "bits": float(b), "bytes": int(n)} for i, (b, n) in enumerate(zip(bits, nbytes))]
    return {"benchmark": f"{bench}_bpb", "metric": "bits_per_byte", "score": sum(bits) / sum(nbytes),
            "n_items": len(samples), "samples": samples}


def run_dir(root: Path, model: str, role: str, method: str, seed: int) -> Path:
    return root / model / role / method / f"seed{seed}"


def index_of(root: Path):
    """`index_of(model, role, method, seed)` for analysis.tables.read_cells."""
    return lambda model, role, method, seed: run_dir(root, model, role, method, seed) / "index.json"


def write_run(root: Path, model: str, role: str, method: str, results: dict[str, dict],
              seed: int = 0) -> Path:
    """`results`: index key ("gsm", "heldout_loss:mix", "gsm_bpb") -> result file content."""
    d = run_dir(root, model, role, method, seed)
    d.mkdir(parents=True)
    files = {key: key.replace(":", "-") + ".json" for key in results}
    for key, result in results.items():
        (d / files[key]).write_text(json.dumps(result))
    (d / "index.json").write_text(json.dumps({"status": "ok", "benchmarks": files}))
    return d / "index.json"
