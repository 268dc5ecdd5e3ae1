"""The single-source stand-in: BIG-bench's JSON tasks from the `bigbench==1.0.0` sdist, minus
every BBH source task (finetune.mixtures.decontaminate.EXCLUDED_TASKS).

A raw example is `{"input", "target"}` (free text, or a list of acceptable targets) or
`{"input", "target_scores": {option: score}}` (multiple choice). We render the task's own prefix,
the input and, for multiple choice, the options as a list; the response is the first target or
the best-scoring option. Files above `max_task_bytes` (cifar/mnist pixels, 50-77 MB synthetic
geometry) are skipped: they are not language instructions and parsing them would dominate the
build.
"""
from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

from artifacts.packaged import fetch_archive
from finetune.chat import single_turn
from finetune.mixtures.decontaminate import excluded_name

BIGBENCH = "bigbench==1.0.0"
DEFAULT_MAX_TASK_BYTES = 8_000_000
MAX_INPUT_CHARS = 4000


def iter_task_files(archive: Path, max_task_bytes: int):
    """(task path such as 'logical_deduction/five_objects', parsed task.json) of each kept task."""
    with tarfile.open(archive) as tf:
        for member in tf:
            name = member.name
            if "/benchmark_tasks/" not in name or not name.endswith("/task.json"):
                continue
            task = name.split("/benchmark_tasks/", 1)[1].rsplit("/task.json", 1)[0]
            if excluded_name(task) or member.size > max_task_bytes:
                continue
            fh = tf.extractfile(member)
            try:
                data = json.load(fh)
            except json.JSONDecodeError as err:
                raise ValueError(f"{archive}:{name}:{err.lineno}: not valid JSON ({err.msg})") from None
            if isinstance(data, dict) and data.get("examples"):
                yield task, data


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


def build_rows(spec: dict, cache_dir: Path) -> list[dict]:
    """spec keys: `max_per_task` (default 100 per top-level task, subtasks sharing it: BIG-bench
    task sizes range from 10s to 100k),
    `max_task_bytes`, `tasks` (optional allow-list of task paths), `seed`."""
    wanted = set(spec["tasks"]) if spec.get("tasks") else None
    if wanted:
        bad = sorted(t for t in wanted if excluded_name(t))
        if bad:
            raise ValueError(f"mixture spec 'tasks': {bad} are evaluation (BBH source) tasks")
    archive = fetch_archive(BIGBENCH, cache_dir, sdist=True)
    rng = random.Random(spec.get("seed", 0))
    cap = spec.get("max_per_task", 100)
    by_task: dict[str, list[dict]] = {}
    for task, data in iter_task_files(archive, spec.get("max_task_bytes", DEFAULT_MAX_TASK_BYTES)):
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
