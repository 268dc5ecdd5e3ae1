"""Reading and writing prepared mixtures: JSONL rows plus a manifest, both written atomically.

A mixture row is one conversation, the form every source is normalised to and training reads:
`{"messages": [{"role", "content"}, ...], "source": str}`, plus `"template": "plain"` for rows
from `prompt`/`completion` data, which train without chat tags (finetune.chat). The DAG caches a
mixture by its file, so a half-written file must never carry the final name: write to a
temporary name in the same folder, then `os.replace`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from artifacts.atomic import jsonl_text, write_text
from artifacts.jsonl import iter_jsonl
from finetune.chat import ROLES, TEMPLATES


def manifest_path(out_path: Path) -> Path:
    return Path(out_path).with_suffix(".manifest.json")


def _stored(row: dict) -> dict:
    out = {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]],
           "source": row["source"]}
    if row.get("template", "chat") != "chat":
        out["template"] = row["template"]
    return out


def write_rows(path: Path, rows: list[dict]) -> str:
    """Write rows as JSONL atomically; return the file's sha256."""
    text = jsonl_text(_stored(row) for row in rows)
    write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_messages(messages, where: str) -> list[dict]:
    """`messages` as a list of {role, content} with known roles and string contents, or a
    ValueError naming `where` and what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: messages[{i}] must be {{role: one of {list(ROLES)}, "
                             f"content: string}}, got {m!r:.200}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_rows(path: Path) -> list[dict]:
    """Rows of a prepared mixture; a malformed line fails naming the file and line."""
    path = Path(path)
    rows = []
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        template = row.get("template", "chat")
        if template not in TEMPLATES:
            raise ValueError(f"{where}: 'template' must be one of {TEMPLATES}, got {template!r}")
        rows.append({"messages": check_messages(row.get("messages"), where),
                     "source": str(row.get("source", path.stem)), "template": template})
    if not rows:
        raise ValueError(f"{path}: the mixture is empty; refusing a zero-step training run")
    return rows


def row_text(row: dict) -> str:
    """Every message's content, one after the other (what decontamination compares)."""
    return "\n".join(m["content"] for m in row["messages"])


def has_reply(row: dict) -> bool:
    """Whether the conversation has an assistant turn with text to train on."""
    return any(m["role"] == "assistant" and m["content"].strip() for m in row["messages"])


def conversation_counts(rows: list[dict]) -> dict:
    """What a mixture holds, conversation by conversation (the manifest's `conversations`)."""
    roles = {role: 0 for role in ROLES}
    for row in rows:
        for m in row["messages"]:
            roles[m["role"]] += 1
    return {"examples": len(rows), "turns": roles,
            "multi_turn": sum(sum(m["role"] == "assistant" for m in r["messages"]) > 1 for r in rows),
            "with_system": sum(any(m["role"] == "system" for m in r["messages"]) for r in rows),
            "plain_template": sum(r.get("template", "chat") == "plain" for r in rows)}
