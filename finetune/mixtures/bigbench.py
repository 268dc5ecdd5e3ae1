"""The single-source stand-in: BIG-bench's JSON tasks as `artifacts.bigbench` ships them (a seeded
sample of each task of the `bigbench==1.0.0` sdist), minus every BBH source task
(finetune.mixtures.decontaminate.EXCLUDED_TASKS).

A raw example is `{"input", "target"}` (free text, or a list of acceptable targets) or
`{"input", "target_scores": {option: score}}` (multiple choice). We render the task's own prefix,
the input and, for multiple choice, the options as a list; the response is the first target or
the best-scoring option.
"""
from __future__ import annotations

import random

from artifacts import bigbench
from finetune.chat import single_turn
from finetune.mixtures.decontaminate import excluded_name

MAX_INPUT_CHARS = 4000


def render_example(task_json: dict, example: dict) -> tuple[str, str] | None:
    """(prompt, response) of one raw example, or None when it has no usable answer."""
    text = str(example.get("input", "")).strip()
    if not text or len(text) > MAX_INPUT_CHARS:
        return None
    prefix = str(task_json.get("task_prefix", "")).strip()
    prompt = f"{prefix}\n\n{text}" if prefix else text
    scores = example.get("target_scores")
    if isinstance(scores, dict) and scores:
        best = max(scores, key=lambda k: scores[k])
        if task_json.get("append_choices_to_input", True):
            prompt += "\nOptions:\n" + "\n".join(f"- {option}" for option in scores)
        return prompt, str(best).strip()
    target = example.get("target")
    if isinstance(target, list):
        target = target[0] if target else None
    if target is None or not str(target).strip():
        return None
    return prompt, str(target).strip()


def build_rows(spec: dict) -> list[dict]:
    """spec keys: `max_per_task` (default 100 per top-level task, subtasks sharing it: BIG-bench
    has up to hundreds of subtasks under one task), `tasks` (optional allow-list of task paths),
    `seed`."""
    wanted = set(spec["tasks"]) if spec.get("tasks") else None
    if wanted:
        bad = sorted(t for t in wanted if excluded_name(t))
        if bad:
            raise ValueError(f"mixture spec 'tasks': {bad} are evaluation (BBH source) tasks")
    rng = random.Random(spec.get("seed", 0))
    cap = spec.get("max_per_task", 100)
    by_task: dict[str, list[dict]] = {}
    for task, data in bigbench.tasks().items():
        if excluded_name(task):
            continue
        if wanted is not None and task not in wanted and task.split("/")[0] not in wanted:
            continue
        rendered = [r for r in (render_example(data, e) for e in data["examples"]) if r]
        by_task.setdefault(task.split("/")[0], []).extend(
            {"messages": single_turn(p, r), "source": f"bigbench-packaged/{task}"} for p, r in rendered)
    rows = []
    for task in sorted(by_task):  # the cap is per task, shared by its subtasks (list_functions has 262)
        rng.shuffle(by_task[task])
        rows += by_task[task][:cap]
    return rows
