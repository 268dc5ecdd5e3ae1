"""One training step: SFT-AG and SFT-MA vs LoRA at the equal budget, and vs the frozen floor.

    python -m bench.step [--rank 8] [--rounds 5] [--selection-rounds 6] [--threads 2] [--clock wall|cpu] [--no-memory]

SmolLM2-135M shapes (random init), 4 x 256 tokens, fp32. Contenders:
- ``floor``: every weight frozen; the gradient flows through the activations only (forward +
  input-gradient backward), the least any fine-tuning step can cost;
- ``lora``: peft LoRA of ``--rank`` on all seven projections (alpha 16, dropout 0.1), AdamW;
- ``sft-ag`` / ``sft-ma``: ``sft.get_sft_model`` with ``sft.lora_equivalent_budget`` of the same
  rank, SftAdamW / SftSM3 and an ``SftSelector`` (S = 20, gamma = 5).

Steps are interleaved round-robin, and every ratio is taken within one round (each contender's
step over the floor's step of the same round), so the table gives per-round ratios as median
[min-max] next to the median seconds. Steady-state steps come first (no selection event); then
the SFT contenders run with their selector attached, next to the floor: SFT-AG's
gradient-estimation phase (its first step forms a dense dW per layer) ending in a reselection,
reported per phase. Peak memory is measured per contender in a
fresh process (Linux VmHWM, reset before the steps) and reported above the frozen model.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bench.timing import CLOCKS, format_spread, machine_line

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONTENDERS = ("floor", "lora", "sft-ag", "sft-ma")
BATCH, SEQ = 4, 256


def smollm2_135m_config(layers: int = 30) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=layers, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True,
        max_position_embeddings=2048,
    )


class Contender:
    """A model with its optimizer; :meth:`step` runs one training step and returns its phase."""

    def __init__(self, name: str, rank: int, layers: int = 30, seed: int = 0):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(smollm2_135m_config(layers))
        self.name, self.selector, self.optimizer = name, None, None
        if name == "floor":
            for param in model.parameters():
                param.requires_grad_(False)
            model.enable_input_require_grads()  # gradient through every layer, no dW anywhere
        elif name == "lora":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.1, target_modules=PROJECTIONS)
            model = get_peft_model(model, config)
            params = [p for p in model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=1e-4)
        elif name in ("sft-ag", "sft-ma"):
            from sft import SftAdamW, SftConfig, SftSM3, get_sft_model, lora_equivalent_budget

            budget = lora_equivalent_budget(model, rank, PROJECTIONS)
            selection = name.removeprefix("sft-")
            model = get_sft_model(
                model, SftConfig(num_tunable_weights=budget, selection=selection,
                                 target_modules=PROJECTIONS)
            )
            groups = model.trainable_parameters_groups
            self.optimizer = SftAdamW(groups, lr=1e-4) if selection == "ag" else SftSM3(groups)
            self.budget = budget
        else:
            raise ValueError(f"unknown contender {name!r}; expected one of {CONTENDERS}")
        self.model = model.train()
        gen = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(49152, (BATCH, SEQ), generator=gen)
        self.selector_seconds: list[float] = []
        self.now = time.perf_counter  # the clock that times reselections

    def start_selection(self, total_steps: int = 1000) -> None:
        """Attach the SFT selector (after warm-up, so its first step is a real phase start)."""
        if self.name.startswith("sft"):
            from sft import SftSelector

            self.selector = SftSelector(self.model, self.optimizer, total_steps)

    def phase(self) -> str:
        if self.selector is None:
            return "plain"
        layers = [layer for _, layer in self.model.sft_layers()]
        if any(layer.estimator is not None and layer.estimator.needs_dense_gradient
               for layer in layers):
            return "estimate-dense"
        if any(layer.estimator is not None for layer in layers):
            return "estimate"
        return "plain"

    def step(self) -> str:
        phase = self.phase()
        loss = self.model(input_ids=self.input_ids, labels=self.input_ids).loss
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.selector is not None:
            start = self.now()
            reselections = self.selector.num_reselections
            self.selector.step()
            if self.selector.num_reselections != reselections:
                self.selector_seconds.append(self.now() - start)
        return phase


def run_timing(names, rank: int, rounds: int, selection_rounds: int, layers: int,
               clock: str) -> tuple[dict, dict]:
    """Per contender and phase, ``(round, seconds)`` of each timed step; and the SFT budgets.

    First ``rounds`` steady-state rounds of every contender; then ``selection_rounds`` rounds
    of the SFT contenders with their selector attached, and of the floor (SFT-AG's estimation
    phase: one step with a dense dW, then sparse candidate gradients, then the reselection).
    Rounds are numbered across both parts, so a step's ratio to the floor of its round is fair.
    """
    now = CLOCKS[clock]
    contenders = [Contender(name, rank, layers) for name in names]
    for contender in contenders:
        contender.now = now
        contender.step()  # warm-up: allocator, optimizer state, plans
    times: dict[str, dict[str, list[tuple[int, float]]]] = {
        c.name: defaultdict(list) for c in contenders
    }
    counter = iter(range(rounds + selection_rounds))

    def timed_rounds(group, count, label):
        for rnd in range(count):
            number = next(counter)
            shift = rnd % len(group)
            for contender in group[shift:] + group[:shift]:
                start = now()
                phase = contender.step()
                times[contender.name][phase].append((number, now() - start))
            print(f"  {label} round {rnd + 1}/{count} done", file=sys.stderr, flush=True)

    timed_rounds(contenders, rounds, "steady-state")
    sft = [c for c in contenders if c.name.startswith("sft")]
    for contender in sft:
        contender.start_selection()
    floor = [c for c in contenders if c.name == "floor"]
    timed_rounds(sft + floor, selection_rounds if sft else 0, "selection")
    for contender in sft:
        if contender.selector_seconds:
            times[contender.name]["reselect"] = [(-1, t) for t in contender.selector_seconds]
    budgets = {c.name: c.budget for c in sft}
    return times, budgets


def ratios_to(steps: list[tuple[int, float]], reference: list[tuple[int, float]]) -> list[float]:
    """Each step's seconds over the reference's seconds in the same round (where it ran)."""
    by_round = dict(reference)
    return [t / by_round[r] for r, t in steps if r in by_round]


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+)", status.read()).group(1))


def measure_memory(name: str, rank: int, steps: int, layers: int) -> dict:
    """Peak resident memory (MiB) during ``steps`` training steps."""
    contender = Contender(name, rank, layers)
    contender.start_selection()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM, the peak resident set size
    for _ in range(steps):
        contender.step()
    peak = _vm_kib("VmHWM")
    return {"name": name, "peak_mib": peak / 1024}


def memory_in_subprocess(name: str, rank: int, steps: int, threads: int, layers: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.step", "--memory-of", name, "--rank", str(rank),
         "--memory-steps", str(steps), "--threads", str(threads), "--layers", str(layers)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="steady-state rounds")
    parser.add_argument("--selection-rounds", type=int, default=6,
                        help="SFT steps with the selector on: 6 = SFT-AG's estimation + reselection")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-steps", type=int, default=2,
                        help="steps per memory run; SFT-AG's first is its dense estimation step")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="cpu: process CPU time, robust to other processes' load with --threads 1",
    )
    parser.add_argument("--layers", type=int, default=30, help="fewer for a quick check only")
    parser.add_argument("--memory-of", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, args.rank, args.memory_steps, args.layers)))
        return

    print(machine_line())
    print(f"one training step, SmolLM2-135M shapes (random init, {args.layers} layers), "
          f"{BATCH} x {SEQ} tokens, fp32, "
          f"LoRA rank {args.rank} and the equal SFT budget, {args.clock} time, "
          f"{args.rounds} + {args.selection_rounds} interleaved rounds; ratios median [min-max]")
    times, budgets = run_timing(args.contenders, args.rank, args.rounds, args.selection_rounds,
                                args.layers, args.clock)
    for name, budget in budgets.items():
        print(f"{name}: {budget} tunable weights (= LoRA rank {args.rank} on {len(PROJECTIONS)} "
              "projections)")
    floor = times.get("floor", {}).get("plain", [])
    lora = times.get("lora", {}).get("plain", [])
    print("| contender | phase | steps | median s/step | vs floor, per round | "
          "vs LoRA, per round |")
    print("|---|---|---|---|---|---|")
    for name, phases in times.items():
        for phase, steps in phases.items():
            median = statistics.median(t for _, t in steps)
            cells = []
            for reference in (floor, lora):
                ratios = ratios_to(steps, reference) if phase != "reselect" else []
                cells.append(format_spread(ratios, 3) if ratios else "-")
            label = "reselect (selector.step only)" if phase == "reselect" else phase
            print(f"| {name} | {label} | {len(steps)} | {median:.3f} | {cells[0]} | {cells[1]} |")
    print(machine_line())

    if args.no_memory:
        return
    print(f"peak resident memory over {args.memory_steps} steps, one fresh process each")
    print("| contender | peak MiB | above frozen-model peak (floor) MiB |")
    print("|---|---|---|")
    memory = {n: memory_in_subprocess(n, args.rank, args.memory_steps, args.threads, args.layers)
              for n in args.contenders}
    base = memory.get("floor", {}).get("peak_mib")
    for name, m in memory.items():
        above = f"{m['peak_mib'] - base:.0f}" if base is not None else "-"
        print(f"| {name} | {m['peak_mib']:.0f} | {above} |")


if __name__ == "__main__":
    main()
