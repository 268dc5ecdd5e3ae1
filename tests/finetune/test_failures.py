"""Failures Snakemake can see: a transient one (out of memory, I/O, a hub 503, SIGTERM) fails the
job so that `--retries` resubmits it, and the retry resumes from the last complete checkpoint;
a deterministic one (a config error, a non-finite loss) becomes a failure record, once."""
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from baselines import resolve_method
from finetune.metrics import NonFiniteLossError, read_metrics
from finetune.train import Preempted, train
from study.rule_log import is_transient, record_failures

REPO = Path(__file__).resolve().parents[2]
CFG = {"max_steps": 6, "batch_size": 2, "grad_accum": 1, "max_length": 64, "logging_steps": 1,
       "save_steps": 2, "warmup_ratio": 0.0}


class HTTPError(OSError):
    """Stands in for requests' / huggingface_hub's HTTP errors: an OSError with a response."""

    def __init__(self, status):
        super().__init__(f"{status} Server Error")
        self.response = type("Response", (), {"status_code": status})()


@pytest.mark.parametrize("exc, transient", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (MemoryError(), True),
    (OSError(errno.EIO, "Input/output error"), True),
    (ConnectionError("connection reset"), True),
    (HTTPError(503), True),
    (HTTPError(429), True),
    (Preempted("SIGTERM at step 3"), True),
    (RuntimeError("process 1 failed: OutOfMemoryError: CUDA out of memory"), True),  # torchrun
    (ValueError("method 'lora': override 'rr' is not a hyperparameter"), False),
    (NonFiniteLossError("loss is nan at step 3"), False),
    (FileNotFoundError(errno.ENOENT, "no such file", "runs/x/artifact"), False),
    (HTTPError(404), False),
    (TypeError("LoraConfig.__init__() got an unexpected keyword argument 'rank'"), False),
])
def test_failures_are_sorted_into_transient_and_deterministic(exc, transient):
    assert is_transient(exc) is transient


def test_a_transient_failure_fails_the_job_and_a_deterministic_one_is_recorded(tmp_path):
    out = tmp_path / "train_summary.json"

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(torch.OutOfMemoryError):
        record_failures(out, oom)
    assert not out.exists()  # nothing that Snakemake would take for a finished output

    def wrapped():
        try:
            oom()
        except torch.OutOfMemoryError as err:
            raise RuntimeError("while training") from err
    with pytest.raises(RuntimeError):
        record_failures(out, wrapped)  # the cause decides
    assert not out.exists()

    def bad_config():
        raise ValueError("train config: unknown key(s) ['max_stpes']")
    record_failures(out, bad_config)
    assert json.loads(out.read_text()) == {"status": "failed",
                                           "error": "ValueError: train config: unknown key(s) ['max_stpes']"}


class OutOfMemoryAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")


def test_an_out_of_memory_is_retried_and_the_retry_resumes(tiny_model_dir, mixture_path, tmp_path):
    run = tmp_path / "run"
    method = resolve_method("lora")
    with pytest.raises(torch.OutOfMemoryError):
        record_failures(run / "train_summary.json",
                        lambda: train(tiny_model_dir, mixture_path, method, CFG, run, seed=0,
                                      callbacks=[OutOfMemoryAt(5)]))
    assert not (run / "train_summary.json").exists()
    summary = train(tiny_model_dir, mixture_path, method, CFG, run, seed=0)  # the retry
    assert summary["status"] == "ok" and summary["steps"] == 6
    assert summary["resumed_from"].endswith("checkpoint-4")
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


CHILD = """
import os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from baselines import resolve_method
from finetune.train import train

class Sigterm(TrainerCallback):  # what Slurm sends at the time limit, mid-step
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

model, data, out = sys.argv[1:4]
train(model, Path(data), resolve_method("sft-ag", {"reselection_steps": 2, "accumulation_steps": 1}),
      {cfg}, Path(out), seed=0, callbacks=[Sigterm()])
""".replace("{cfg}", repr({**CFG, "save_steps": 100}))


def test_a_sigterm_saves_a_checkpoint_first_and_the_retry_resumes(tiny_model_dir, mixture_path, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", CHILD, tiny_model_dir, str(mixture_path), str(run)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode not in (0, -signal.SIGTERM), killed.stderr[-2000:]
    assert "Preempted: SIGTERM at step 3" in killed.stderr  # the step under way was finished
    assert (run / "checkpoints" / "checkpoint-3" / "checkpoint-complete").exists()
    assert not (run / "train_summary.json").exists()
    summary = train(tiny_model_dir, mixture_path, resolve_method(
        "sft-ag", {"reselection_steps": 2, "accumulation_steps": 1}), {**CFG, "save_steps": 100},
        run, seed=0)
    assert summary["resumed_from"].endswith("checkpoint-3") and summary["steps"] == 6
