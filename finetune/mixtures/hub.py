"""Hub and local-file sources, normalised to conversations (finetune.mixtures.io's rows).

The layouts the reference's training code (open-instruct `finetune.py`) reads, and the paper's
three hub sets:
- `messages` (`allenai/tulu-v2-sft-mixture`, `ostapeno/tulu_v2_flan_v2_subset`): the whole
  conversation, every turn, system messages included, as the reference trains on it;
- `prompt` + `completion` (the reference's other layout, also accepted for the Flan v2 subset):
  one user and one assistant message in the `plain` template (no chat tags, as the reference);
- `instruction` / `input` / `output` (GPT4-Alpaca, `vicgalle/alpaca-gpt4`): the prompt through a
  template drawn per example as the reference's conversion does (finetune.mixtures.alpaca);
- `prompt` + `response` (our own local files): one chat turn.
Anything else is an error naming the dataset and the columns found. (A conversation without an
assistant reply is dropped, and counted, by build_mixture.)
"""
from __future__ import annotations

from pathlib import Path

from artifacts.jsonl import iter_jsonl
from finetune.chat import single_turn
from finetune.mixtures import alpaca
from finetune.mixtures.io import check_messages

LAYOUTS = "'messages', 'prompt'/'completion', 'instruction'/'output' or 'prompt'/'response'"


def normalise(raw: dict, where: str, source: str, index: int, seed: int = 0) -> dict:
    """One conversation row from a raw row of any accepted layout (see the module docstring)."""
    if "messages" in raw:
        return {"messages": check_messages(raw["messages"], where),
                "source": f"{source}/{raw.get('dataset') or 'messages'}"}
    if "instruction" in raw and "output" in raw:
        messages = alpaca.encode(str(raw["instruction"]), raw.get("input"), str(raw["output"]),
                                 alpaca.example_rng(seed, index))
        return {"messages": messages, "source": source}
    if "prompt" in raw and "completion" in raw:
        return {"messages": single_turn(str(raw["prompt"]), str(raw["completion"])),
                "source": str(raw.get("dataset") or source), "template": "plain"}
    if "prompt" in raw and "response" in raw:
        return {"messages": single_turn(str(raw["prompt"]), str(raw["response"])),
                "source": str(raw.get("source", source))}
    raise ValueError(f"{where}: a row needs {LAYOUTS}; this one has columns {sorted(raw)}")


def hub_rows(spec: dict) -> list[dict]:
    """spec keys: `hub_id` (required), `hub_config`, `split` (default train)."""
    import datasets

    hub_id = spec.get("hub_id")
    if not hub_id:
        raise ValueError("mixture spec with source 'hub' needs 'hub_id'")
    ds = datasets.load_dataset(hub_id, spec.get("hub_config"), split=spec.get("split", "train"))
    seed = spec.get("seed", 0)
    return [normalise(dict(r), f"{hub_id} row {i}", hub_id, i, seed) for i, r in enumerate(ds)]


def path_rows(spec: dict) -> list[dict]:
    """spec keys: `path` to a JSONL file (any of the layouts above)."""
    path = Path(spec.get("path") or "")
    if not spec.get("path") or not path.exists():
        raise ValueError(f"mixture spec with source 'path' needs an existing 'path' (got {spec.get('path')!r})")
    seed = spec.get("seed", 0)
    return [normalise(raw, f"{path}:{lineno}", path.stem, i, seed)
            for i, (lineno, raw) in enumerate(iter_jsonl(path))]
