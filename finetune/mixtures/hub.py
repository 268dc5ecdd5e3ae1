"""Hub and local-file sources, normalised to prompt/response rows.

Handles the paper's three hub sets: Tulu-format `messages` lists (`allenai/tulu-v2-sft-mixture`,
`ostapeno/tulu_v2_flan_v2_subset`) and Alpaca-format `instruction`/`input`/`output`
(GPT4-Alpaca). A multi-turn conversation becomes its first user turn and first assistant reply
(the chat format here has one turn). Rows already carrying `prompt`/`response` pass through.
"""
from __future__ import annotations

from pathlib import Path

from artifacts.jsonl import iter_jsonl


def normalise(raw: dict, where: str, source: str) -> dict | None:
    """One prompt/response row, or None when the raw row has no usable turn pair."""
    if "messages" in raw:
        user = next((m["content"] for m in raw["messages"] if m.get("role") == "user"), None)
        reply = next((m["content"] for m in raw["messages"] if m.get("role") == "assistant"), None)
        if user is None or reply is None:
            return None
        return {"prompt": user.strip(), "response": reply.strip(),
                "source": f"{source}/{raw.get('dataset', 'messages')}"}
    if "instruction" in raw and "output" in raw:
        extra = str(raw.get("input") or "").strip()
        prompt = raw["instruction"].strip() + (f"\n\n{extra}" if extra else "")
        return {"prompt": prompt, "response": str(raw["output"]).strip(), "source": source}
    if "prompt" in raw and "response" in raw:
        return {"prompt": str(raw["prompt"]), "response": str(raw["response"]),
                "source": str(raw.get("source", source))}
    raise ValueError(f"{where}: row has none of 'messages', 'instruction'/'output', "
                     f"'prompt'/'response' (keys: {sorted(raw)})")


def hub_rows(spec: dict) -> list[dict]:
    """spec keys: `hub_id` (required), `hub_config`, `split` (default train)."""
    import datasets

    hub_id = spec.get("hub_id")
    if not hub_id:
        raise ValueError("mixture spec with source 'hub' needs 'hub_id'")
    ds = datasets.load_dataset(hub_id, spec.get("hub_config"), split=spec.get("split", "train"))
    rows = [normalise(dict(r), f"{hub_id} row {i}", hub_id) for i, r in enumerate(ds)]
    return [r for r in rows if r]


def path_rows(spec: dict) -> list[dict]:
    """spec keys: `path` to a JSONL file (any of the row formats above)."""
    path = Path(spec.get("path") or "")
    if not spec.get("path") or not path.exists():
        raise ValueError(f"mixture spec with source 'path' needs an existing 'path' (got {spec.get('path')!r})")
    rows = []
    for lineno, raw in iter_jsonl(path):
        row = normalise(raw, f"{path}:{lineno}", path.stem)
        if row:
            rows.append(row)
    return rows
