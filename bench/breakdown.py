"""Where a training step's time goes: torch.profiler self time per op, contenders side by side.

    python -m bench.breakdown [--contenders floor lora sft-ag sft-ma] [--steps 3] [--top 15]

Same contenders and shapes as ``bench.step`` (SmolLM2-135M from a config, 4 x 256 tokens,
LoRA rank 8 and the equal SFT budget), steady-state steps (no selector). Each contender runs
one warm-up step, then ``--steps`` profiled steps; the table lists the ops with the most self
CPU time over all contenders, in milliseconds per step, so that an SFT step's excess over the
floor or LoRA can be read off op by op.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from bench.step import CONTENDERS, Contender
from bench.timing import machine_line


def self_times_ms(contender: Contender, steps: int) -> dict[str, float]:
    """Self CPU milliseconds per step of every op in ``steps`` profiled steps."""
    contender.step()  # warm-up: allocator, optimizer state, plans
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            contender.step()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1000 / steps
    return dict(totals)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", nargs="+", default=["floor", "lora", "sft-ag"],
                        choices=CONTENDERS)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=30, help="fewer for a quick check only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_line())
    times = {name: self_times_ms(Contender(name, args.rank, args.layers), args.steps)
             for name in args.contenders}
    ops = sorted({op for t in times.values() for op in t},
                 key=lambda op: -max(t.get(op, 0.0) for t in times.values()))
    names = list(times)
    print(f"self CPU ms per step (torch.profiler), {args.steps} steps after 1 warm-up, "
          f"{args.layers} layers, top {args.top} ops")
    print("| op | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for op in ops[:args.top]:
        print(f"| {op} | " + " | ".join(f"{times[n].get(op, 0.0):.1f}" for n in names) + " |")
    rest = {n: sum(v for op, v in times[n].items() if op not in ops[:args.top]) for n in names}
    print("| (all other ops) | " + " | ".join(f"{rest[n]:.1f}" for n in names) + " |")
    print("| **total self time** | " + " | ".join(f"{sum(times[n].values()):.1f}" for n in names)
          + " |")
    print(machine_line())


if __name__ == "__main__":
    main()
