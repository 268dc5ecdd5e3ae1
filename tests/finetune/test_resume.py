"""A training process killed mid-run resumes from its last checkpoint, and its final weights are
bit-identical on CPU to an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from baselines import resolve_method
from finetune.metrics import read_metrics
from finetune.train import train

REPO = Path(__file__).resolve().parents[2]
CFG = {"max_steps": 6, "batch_size": 2, "grad_accum": 2, "max_length": 64, "logging_steps": 1,
       "save_steps": 2, "warmup_ratio": 0.2}
# SpIEL with S = 3, gamma = 2 over the 6 steps: reselections after steps 2 and 5, and the
# estimation phase of the second (steps 4-5) straddles checkpoint-4, so the kill after step 5
# loses a reselection and the resumed run must finish that phase from saved statistics.
OVERRIDES = {name: {"reselection_steps": 3, "accumulation_steps": 2}
             for name in ("sft-ag", "sft-ma", "qsft-ag", "qsft-ma")}
CHILD = """
import os, signal, sys, torch
from pathlib import Path
from transformers import TrainerCallback
from baselines import resolve_method
from finetune.train import train
torch.set_num_threads(1)
model, data, out, name, kill_at = sys.argv[1:6]

class Die(TrainerCallback):  # a hard kill mid-run, after a checkpoint and part-way into more steps
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)

cfg = {cfg}
method = resolve_method(name, {overrides}.get(name))
train(model, Path(data), method, cfg, Path(out), seed=7, callbacks=[Die()] if int(kill_at) else [])
""".replace("{cfg}", repr(CFG)).replace("{overrides}", repr(OVERRIDES))


def _run(model, data, out, name, kill_at):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", CHILD, model, str(data), str(out), name, str(kill_at)],
                          env=env, capture_output=True, text=True, timeout=300)


def _weights(artifact: Path) -> dict:
    files = sorted(artifact.glob("*.safetensors"))
    assert files, f"no weights in {artifact}"
    return {f"{f.name}:{k}": v for f in files for k, v in load_file(f).items()}


@pytest.mark.parametrize("name", ["lora", "sft-ag", "sft-ma", *(
    pytest.param(name, marks=pytest.mark.slow) for name in ("sift", "qsft-ag", "qsft-ma"))])
def test_killed_run_resumes_bit_identically(name, tiny_model_dir, mixture_path, tmp_path):
    killed = _run(tiny_model_dir, mixture_path, tmp_path / "resumed", name, kill_at=5)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "resumed" / "artifact").exists()
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-4").is_dir()
    assert [r["step"] for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    if name in OVERRIDES:  # checkpoint-4 holds SFT-AG's half-done phase: one step per layer
        selector = tmp_path / "resumed" / "checkpoints" / "checkpoint-4" / "sft_selector.safetensors"
        with safe_open(str(selector), framework="pt") as handle:
            phase_steps = json.loads(handle.metadata()["phase_steps"])
        assert set(phase_steps.values()) == ({1} if name.endswith("-ag") else set())

    resumed = _run(tiny_model_dir, mixture_path, tmp_path / "resumed", name, kill_at=0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The uninterrupted reference runs in this process (one thread, like the children).
    torch.set_num_threads(1)
    train(tiny_model_dir, mixture_path, resolve_method(name, OVERRIDES.get(name)), CFG,
          tmp_path / "straight", seed=7)

    a, b = _weights(tmp_path / "resumed" / "artifact"), _weights(tmp_path / "straight" / "artifact")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    if name in OVERRIDES:  # both reselections happened, the second one after the restart
        assert {int(v) for k in a if k.endswith(".grown_at") for v in a[k].unique()} == {1, 2}
    rows_a = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    rows_b = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    assert [r["step"] for r in rows_a] == [1, 2, 3, 4, 5, 6]  # step 5 re-run, not duplicated
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def test_resume_skips_a_checkpoint_torn_by_a_kill(tmp_path):
    """A kill between the Trainer's files and the last callback's leaves a folder without the
    completion marker: resuming takes the newest complete checkpoint instead."""
    from finetune.train import CHECKPOINT_COMPLETE, last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "none-yet") is None
    for step, complete in [(2, True), (4, True), (10, True), (12, False)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / CHECKPOINT_COMPLETE).touch()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
