"""SFT-MA's growth ranking: the previous row-chunk scan vs the threshold search, side by side.

    python -m bench.ma_growth [--repeats 5] [--threads 1] [--rank 16] [--layers 30] [--clock cpu|wall]

For every SmolLM2-135M projection shape, ranks growth by SM3 accumulators with
``sft.growth.top_outer_product`` (new) and with ``chunked_scan`` (the implementation it
replaced, kept here only as the baseline) at the first reselection (k = d_phi, every index
replaced) and at a later one (k = 0.2 d_phi). d_phi is the LoRA-rank-equivalent density,
excluded = d_phi random active positions, accumulators log-normal (SM3 sums of squared
gradients spread over orders of magnitude). Both must pick the same scores. Medians of
interleaved repeats; ``--clock cpu`` (default) counts this process's CPU time, so other jobs'
load on a shared machine inflates neither. The totals add up one reselection of the whole
model (``--layers`` decoder layers x 7 projections).
"""

from __future__ import annotations

import argparse
import math

import torch

from bench.timing import interleaved_medians, machine_line
from sft.growth import top_outer_product

# (name, d_out, d_in, matrices of this shape per decoder layer)
SHAPES = [("q/o", 576, 576, 2), ("k/v", 192, 576, 2), ("gate/up", 1536, 576, 2),
          ("down", 576, 1536, 1)]


def chunked_scan(row, col, k, excluded, chunk_elements=1 << 20):
    """The previous implementation (baseline only): top-k of each block of rows' dense scores,
    merged by re-running top-k on the concatenation."""
    d_out, d_in = row.numel(), col.numel()
    rows_per_chunk = max(1, chunk_elements // d_in)
    excluded = excluded.long()
    best_scores = torch.empty(0, dtype=torch.float32)
    best_index = torch.empty(0, dtype=torch.long)
    for start in range(0, d_out, rows_per_chunk):
        stop = min(d_out, start + rows_per_chunk)
        scores = torch.outer(row[start:stop].float(), col.float()).reshape(-1)
        lo, hi = start * d_in, stop * d_in
        first, last = torch.searchsorted(excluded, torch.tensor([lo, hi]))
        scores[excluded[first:last] - lo] = -math.inf
        top = torch.topk(scores, min(k, scores.numel()), sorted=False)
        best_scores = torch.cat([best_scores, top.values])
        best_index = torch.cat([best_index, top.indices + lo])
        if best_scores.numel() > k:
            keep = torch.topk(best_scores, k, sorted=False).indices
            best_scores, best_index = best_scores[keep], best_index[keep]
    return best_index


def growth_case(d_out: int, d_in: int, density: float, seed: int):
    """Log-normal accumulators and ``density`` of the positions active (excluded)."""
    generator = torch.Generator().manual_seed(seed)
    row = torch.exp(2 * torch.randn(d_out, generator=generator)) * 1e-6
    col = torch.exp(2 * torch.randn(d_in, generator=generator)) * 1e-6
    d_phi = round(density * d_out * d_in)
    excluded = torch.sort(torch.randperm(d_out * d_in, generator=generator)[:d_phi]).values
    return row, col, excluded, d_phi


def picked_scores(row, col, flat):
    return torch.sort(row[flat // col.numel()] * col[flat % col.numel()]).values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank of the equal budget")
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lora = sum(n * args.rank * (d_out + d_in) for _, d_out, d_in, n in SHAPES)
    density = lora / sum(n * d_out * d_in for _, d_out, d_in, n in SHAPES)
    print(machine_line())
    print(f"density {density:.4f} (LoRA r={args.rank} budget), {args.clock} time, median of "
          f"{args.repeats} interleaved repeats\n")
    print("| reselection | shape | k | old ms | new ms | speed-up |")
    print("|---|---|---|---|---|---|")
    for label, fraction in (("first", 1.0), ("later", 0.2)):
        totals = {"old": 0.0, "new": 0.0}
        for seed, (name, d_out, d_in, per_layer) in enumerate(SHAPES):
            row, col, excluded, d_phi = growth_case(d_out, d_in, density, seed)
            k = int(fraction * d_phi)
            old = chunked_scan(row, col, k, excluded)
            new = top_outer_product(row, col, k, excluded)
            if not torch.equal(picked_scores(row, col, old), picked_scores(row, col, new)):
                raise AssertionError(f"{name}: old and new growth pick different scores")
            medians = interleaved_medians(
                {"old": lambda: chunked_scan(row, col, k, excluded),
                 "new": lambda: top_outer_product(row, col, k, excluded)},
                args.repeats, clock=args.clock)
            for key in totals:
                totals[key] += medians[key] * per_layer * args.layers
            print(f"| {label} | {name} {d_out}x{d_in} | {k} | {medians['old'] * 1e3:.1f} | "
                  f"{medians['new'] * 1e3:.1f} | {medians['old'] / medians['new']:.1f}x |")
        print(f"| {label}, whole model ({args.layers} layers x 7) | | | "
              f"{totals['old'] * 1e3:.0f} | {totals['new'] * 1e3:.0f} | "
              f"{totals['old'] / totals['new']:.1f}x |")


if __name__ == "__main__":
    main()
