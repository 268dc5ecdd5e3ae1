"""Delta-gradient op: sampled_addmm (SDDMM) vs dense dW + gather, on SmolLM2-135M shapes.

    python -m bench.kernels [--tokens 2048] [--threads 2] [--repeats 15] [--clock wall|cpu]
                            [--shapes smollm2 llama]

Prints, per weight shape and density, the median time of each path, the speed-up of the sparse
path over dense + gather as median [min-max] of the per-repeat ratios (both paths timed in the
same round), and which path :func:`sft.kernels.make_plan` dispatches to.
"""

from __future__ import annotations

import argparse

import torch

import sft.kernels as kernels
from bench.timing import CLOCKS, format_spread, interleaved_samples, machine_line, round_ratios
from sft.kernels import DENSE, SDDMM, delta_grad, make_plan

# (d_out, d_in) of the projections, nn.Linear layout: SmolLM2-135M, and Llama-3.2-1B (hidden
# 2048, 8 kv heads of 64, intermediate 8192) for wider layers of the same family.
SHAPE_SETS = {
    "smollm2": {
        "q/o 576x576": (576, 576),
        "k/v 192x576": (192, 576),
        "gate/up 1536x576": (1536, 576),
        "down 576x1536": (576, 1536),
    },
    "llama": {
        "1B q/o 2048x2048": (2048, 2048),
        "1B k/v 512x2048": (512, 2048),
        "1B up 8192x2048": (8192, 2048),
    },
}
DENSITIES = (0.003, 0.01, 0.03, 0.10, 0.20)


def _with_chunk(chunk: int, fn):
    """``fn`` run with the SDDMM's token chunk set to ``chunk`` (to compare chunk sizes)."""

    def run():
        default, kernels.TOKEN_CHUNK = kernels.TOKEN_CHUNK, chunk
        try:
            return fn()
        finally:
            kernels.TOKEN_CHUNK = default

    return run


def bench_shape(shape, density, tokens, repeats, clock, gen, chunks=()) -> dict:
    d_out, d_in = shape
    count = max(1, round(density * d_out * d_in))
    indices = torch.randperm(d_out * d_in, generator=gen)[:count]
    x = torch.randn(tokens, d_in, generator=gen)
    grad_out = torch.randn(tokens, d_out, generator=gen)
    plans = {name: make_plan(indices, shape, method=name) for name in (DENSE, SDDMM)}
    torch.testing.assert_close(  # the contenders must agree before their times mean anything
        delta_grad(x, grad_out, plans[SDDMM]), delta_grad(x, grad_out, plans[DENSE]),
        rtol=1e-3, atol=1e-3,
    )
    contenders = {name: (lambda p=plan: delta_grad(x, grad_out, p)) for name, plan in plans.items()}
    for chunk in chunks:
        contenders[f"chunk {chunk}"] = _with_chunk(chunk, contenders[SDDMM])
    times = interleaved_samples(contenders, repeats, clock=clock)
    return {"count": count, **times, "speedup": round_ratios(times[DENSE], times[SDDMM]),
            "auto": make_plan(indices, shape).method}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--densities", type=float, nargs="+", default=DENSITIES)
    parser.add_argument("--shapes", nargs="+", default=["smollm2"], choices=sorted(SHAPE_SETS))
    parser.add_argument(
        "--token-chunks", type=int, nargs="*", default=[],
        help="also time the SDDMM with these token-chunk sizes (default chunk: "
        f"{kernels.TOKEN_CHUNK})",
    )
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="cpu: process CPU time, robust to other processes' load with --threads 1",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(machine_line())
    print(
        f"delta_grad, fp32, {args.tokens} tokens, {args.clock} time of {args.repeats} "
        "interleaved runs: median [min-max]"
    )
    extra = [f"chunk {c}" for c in args.token_chunks]
    print("| shape | density | active | dense+gather ms | sddmm ms | dense/sddmm | dispatch |"
          + "".join(f" sddmm, {name} ms |" for name in extra))
    print("|---|---|---|---|---|---|---|" + "---|" * len(extra))
    shapes = {label: shape for name in args.shapes for label, shape in SHAPE_SETS[name].items()}
    for label, shape in shapes.items():
        for density in args.densities:
            r = bench_shape(
                shape, density, args.tokens, args.repeats, args.clock, gen, args.token_chunks
            )
            ms = {name: [t * 1e3 for t in r[name]] for name in (DENSE, SDDMM, *extra)}
            print(
                f"| {label} | {density:.1%} | {r['count']} | {format_spread(ms[DENSE])} | "
                f"{format_spread(ms[SDDMM])} | {format_spread(r['speedup'], unit='x')} | "
                f"{r['auto']} |" + "".join(f" {format_spread(ms[name])} |" for name in extra),
                flush=True,
            )
    print(machine_line())


if __name__ == "__main__":
    main()
