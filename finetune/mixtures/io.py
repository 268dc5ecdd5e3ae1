"""Reading and writing prepared mixtures: JSONL rows plus a manifest, both written atomically.

A mixture row is `{"prompt": str, "response": str, "source": str}`. The DAG caches a mixture by
its file, so a half-written file must never carry the final name: write to a temporary name in
the same folder, then `os.replace`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from artifacts.atomic import jsonl_text, write_text
from artifacts.jsonl import iter_jsonl

ROW_KEYS = ("prompt", "response", "source")


def manifest_path(out_path: Path) -> Path:
    return Path(out_path).with_suffix(".manifest.json")


def write_rows(path: Path, rows: list[dict]) -> str:
    """Write rows as JSONL atomically; return the file's sha256."""
    text = jsonl_text({k: row[k] for k in ROW_KEYS} for row in rows)
    write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_rows(path: Path) -> list[dict]:
    """Rows of a prepared mixture; a malformed line fails naming the file and line."""
    path = Path(path)
    rows = []
    for lineno, row in iter_jsonl(path):
        for key in ("prompt", "response"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{path}:{lineno}: missing or non-string {key!r}")
        rows.append({"prompt": row["prompt"], "response": row["response"],
                     "source": str(row.get("source", path.stem))})
    if not rows:
        raise ValueError(f"{path}: the mixture is empty; refusing a zero-step training run")
    return rows
