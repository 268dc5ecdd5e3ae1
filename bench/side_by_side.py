"""Two one-thread jobs side by side against two two-thread jobs one after another.

    python -m bench.side_by_side [--model .cache/models/smollm2-135m]
        [--heldout results/data/mixtures/flan.heldout.jsonl] [--rounds 1]

The embedded default gives each training and evaluation one core and runs two at once (config
`resources`, the default profile's `heavy=2`). This times the choice on a real job: the
held-out scoring an evaluation runs (finetune.heldout.heldout_loss, the config's max_length and
batch size), each job a fresh process as Snakemake starts it. Per round, "one after another"
(two jobs, 2 threads each, in turn) and "side by side" (two jobs, 1 thread each, at once), who
goes first rotating; it prints both walls and their ratio. Quiet machine only: the jobs
themselves keep the load at about 2.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import yaml

from bench.timing import machine_line

JOB = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from transformers import AutoModelForCausalLM, AutoTokenizer
from finetune.heldout import heldout_loss
model = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32).eval()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
heldout_loss(model, tokenizer, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
"""


def start(threads: int, args, heldout_cfg: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", JOB, str(threads), args.model, args.heldout,
                             str(heldout_cfg["max_length"]), str(heldout_cfg["batch_size"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_all(jobs: list[subprocess.Popen]) -> None:
    for job in jobs:
        if job.wait() != 0:
            raise SystemExit(f"a scoring job failed (exit {job.returncode}): run it alone to see why")


def one_after_another(args, cfg) -> float:
    begin = time.perf_counter()
    for _ in range(2):
        wait_all([start(2, args, cfg)])
    return time.perf_counter() - begin


def side_by_side(args, cfg) -> float:
    begin = time.perf_counter()
    wait_all([start(1, args, cfg), start(1, args, cfg)])
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=".cache/models/smollm2-135m")
    parser.add_argument("--heldout", default="results/data/mixtures/flan.heldout.jsonl")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    cfg = yaml.safe_load(open(args.config))["heldout"]
    print(machine_line())
    ways = {"one after another (2 threads each)": one_after_another,
            "side by side (1 thread each)": side_by_side}
    names = list(ways)
    for rnd in range(args.rounds):
        walls = {}
        for name in names[rnd % 2:] + names[:rnd % 2]:
            walls[name] = ways[name](args, cfg)
            print(f"round {rnd}: {name}: {walls[name]:.1f} s", flush=True)
        ratio = walls[names[1]] / walls[names[0]]
        print(f"round {rnd}: side by side / one after another = {ratio:.2f}")
    print(machine_line())


if __name__ == "__main__":
    main()
