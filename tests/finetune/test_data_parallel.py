"""One run on 2 processes (torchrun, gloo on CPU) trains as one process at the same effective
batch, only process 0 writes the run's files, and the launch command and refusals."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from baselines import resolve_method
from baselines.eval_model import load_for_eval
from finetune.data_parallel import (DataParallelError, check_data_parallel, torchrun_command,
                                    train_data_parallel)
from finetune.metrics import read_metrics
from finetune.train import cli_argv, parse_args, read_method, record_method

CFG = {"max_steps": 5, "batch_size": 2, "grad_accum": 2, "max_length": 64, "logging_steps": 1,
       "save_steps": 100, "warmup_ratio": 0.0}
# The same 4 examples a step as 2 processes x 1 micro-batch of 2 (SFT-AG picks growth candidates
# from a phase's first micro-batch, on every process: accumulation would change what it sees).
ONE_PROCESS = {**CFG, "batch_size": 4, "grad_accum": 1}
# Reselections after steps 2 and 4, each from 1 step of growth statistics, and a step after
# each: DDP averages the values' gradients slot by slot, so processes that disagreed on a
# selection would tune the wrong weights from then on.
OVERRIDES = {"reselection_steps": 2, "accumulation_steps": 1}


def _by_index(run) -> dict:
    """{layer: (indices, grown_at, values)} in index order (slots are ordered by growth)."""
    tensors = load_file(run / "artifact" / "sft_model.safetensors")
    layers = {}
    for name in (k.removesuffix(".indices") for k in tensors if k.endswith(".indices")):
        order = tensors[f"{name}.indices"].argsort()
        layers[name] = tuple(tensors[f"{name}.{part}"][order] for part in ("indices", "grown_at", "values"))
    return layers


@pytest.fixture
def cpu_processes(monkeypatch):
    """The launched processes run on CPU (gloo) on any machine, one thread each."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _method_file(run_dir, name="sft-ag", overrides=OVERRIDES):
    """What the DAG's resolve_method rule writes before training."""
    record_method(resolve_method(name, overrides), run_dir)
    return run_dir / "method.json"


def test_two_processes_train_as_one_and_one_writes(tiny_model_dir, mixture_path, tmp_path, cpu_processes):
    train_data_parallel(2, cli_argv(tiny_model_dir, mixture_path, _method_file(tmp_path / "ddp"), CFG,
                                    tmp_path / "ddp", 0))
    subprocess.run([sys.executable, "-m", "finetune.train", *cli_argv(
        tiny_model_dir, mixture_path, _method_file(tmp_path / "one"), ONE_PROCESS, tmp_path / "one", 0)],
        check=True)

    ddp = json.loads((tmp_path / "ddp" / "train_summary.json").read_text())
    one = json.loads((tmp_path / "one" / "train_summary.json").read_text())
    assert ddp["status"] == "ok" and ddp["world_size"] == 2 and one["world_size"] == 1
    assert ddp["steps"] == 5
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())  # no second writer's leftovers
    rows = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # one row per step: one writer
    # Each step's loss is the mean over the processes: the loss of the whole batch.
    expected = [r["loss"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    assert [r["loss"] for r in rows] == pytest.approx(expected, rel=1e-4)
    # Growth statistics are all-reduced, so the selections are the one process's at the whole
    # batch; without that, process 0 would pick from half the batch.
    ddp_layers, one_layers = _by_index(tmp_path / "ddp"), _by_index(tmp_path / "one")
    assert ddp_layers.keys() == one_layers.keys()
    for name, (indices, grown_at, values) in ddp_layers.items():
        assert torch.equal(indices, one_layers[name][0]) and torch.equal(grown_at, one_layers[name][1])
        torch.testing.assert_close(values, one_layers[name][2], rtol=1e-4, atol=1e-8)
    load_for_eval(tiny_model_dir, tmp_path / "ddp", read_method(tmp_path / "ddp"))


def test_a_failing_process_raises_its_own_error(tiny_model_dir, tmp_path, cpu_processes):
    argv = cli_argv(tiny_model_dir, tmp_path / "missing.jsonl", _method_file(tmp_path / "run", overrides={}),
                    CFG, tmp_path / "run", 0)
    with pytest.raises(DataParallelError, match="missing.jsonl"):
        train_data_parallel(2, argv)
    assert not (tmp_path / "run" / "train_summary.json").exists()


def test_more_than_one_gpu_launches_the_cli_under_torchrun(tmp_path):
    argv = cli_argv("models/m", tmp_path / "mix.jsonl", tmp_path / "run" / "method.json",
                    {"grad_accum": 4}, tmp_path / "run", 3)
    command = torchrun_command(4, argv)
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
                           "-m", "finetune.train", *argv]
    args = parse_args(argv)
    assert (args.model, args.data, args.method_file, args.train_cfg, args.out, args.seed) == (
        "models/m", tmp_path / "mix.jsonl", tmp_path / "run" / "method.json", {"grad_accum": 4},
        tmp_path / "run", 3)


def test_refusals_name_the_config_keys():
    check_data_parallel(resolve_method("sift"), 3, 1)  # one process: anything goes
    check_data_parallel(resolve_method("qsft-ag"), 4, 2)
    with pytest.raises(ValueError, match=r"'sift' cannot train on 2 GPUs \(resources.train.gpu\)"):
        check_data_parallel(resolve_method("sift"), 4, 2)
    with pytest.raises(ValueError, match=r"train.grad_accum \(3\) must be a multiple .*resources.train.gpu"):
        check_data_parallel(resolve_method("lora"), 3, 2)
