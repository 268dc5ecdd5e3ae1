"""One whole reselection: the previous per-layer code vs the batched one, side by side.

    python -m bench.reselection [--shapes reduced|llama-2-7b] [--device cpu|cuda]
                                [--rank 64] [--repeats 3] [--threads 1]

Builds a random-weight Llama of the given shapes (``reduced``: 4 layers, hidden 512, MLP 1376,
small enough for a CPU; ``llama-2-7b``: 32 layers, 4096, 11008, for a GPU), gives it the
tuned-entry budget of LoRA rank ``--rank`` with random index sets and deltas, fills SM3's
accumulators (log-normal, as sums of squared gradients are) and SFT-AG's candidate statistics,
and times ``SftSelector.reselect()`` for SFT-MA and SFT-AG at the first reselection (every
entry replaced) and a later one (k = 0.2 (T - t) / T d_phi). ``old`` is the code before the
batching (one growth search per matrix, its host waits inside loops), kept here only as the
baseline; both start from the same state each time and must grow the same entries. Wall-clock
medians of interleaved repeats, the device synchronized around each call.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import Tensor
from transformers import LlamaConfig, LlamaForCausalLM

from bench.timing import machine_line
from sft import SftAdamW, SftConfig, SftSelector, SftSM3, get_sft_model
from sft.estimation import CandidateEstimator
from sft.layer import random_subset
from sft.optim import GrowthSeed
from sft.selection import replacement_count, smallest_magnitude_positions

SHAPES = {"reduced": (4, 512, 1376), "llama-2-7b": (32, 4096, 11008)}  # layers, hidden, MLP


# ---- the previous per-layer reselection (baseline only) ----------------------------------

@torch.no_grad()
def per_layer_reselect(selector: SftSelector) -> None:
    """``SftSelector.reselect`` as it was: each layer on its own, growth searched per matrix."""
    first = selector.num_reselections == 0
    selector.model.num_reselections += 1
    for _, layer in selector._layers():
        k = replacement_count(layer.num_active, selector.completed_steps, selector.total_steps,
                              selector.config.initial_reselection_rate, selector.config.schedule,
                              first)
        if k == 0:
            continue
        dropped = smallest_magnitude_positions(layer.values, k)
        keep = torch.ones(layer.num_active, dtype=torch.bool, device=dropped.device)
        keep[dropped] = False
        seed = None
        if selector.config.selection == "ag":
            estimator = layer.estimator
            mean_grad, mean_sq_grad = estimator.moments()
            score = mean_grad.abs()
            score[torch.isin(estimator.candidates, layer.indices[keep])] = -math.inf
            chosen = torch.topk(score, k, sorted=False).indices
            seed = GrowthSeed(mean_grad[chosen], mean_sq_grad[chosen], estimator.num_steps)
            grown = estimator.candidates[chosen]
        else:
            row_acc, col_acc = selector.optimizer.accumulators(layer.values)
            numel = layer.shape[0] * layer.shape[1]
            excluded = layer.indices if numel - layer.num_active >= k else layer.indices[keep]
            grown = old_top_outer_product(row_acc, col_acc, k, torch.sort(excluded.long()).values)
        int(torch.isin(grown.to(layer.indices.dtype), layer.indices[dropped]).sum())  # regrown
        selector._replace(layer, dropped, grown, seed)


def old_top_outer_product(row: Tensor, col: Tensor, k: int, excluded: Tensor,
                      chunk_elements: int = 1 << 13) -> Tensor:
    """The previous growth search (baseline only). Flat row-major indices of the ``k`` largest scores fl32(row_i * col_j) over positions
    not in ``excluded`` (sorted flat indices); among equal scores the smaller flat index wins,
    and the order is deterministic, so every data-parallel rank grows the same entries.

    Exact, and never builds the dense score matrix. Sorting the columns once sorts every row's
    scores, so a threshold t's count of positions scoring >= t costs O(d_out log d_in). A
    search over t (as fp32 bit patterns, ``chunk_elements // d_out`` thresholds per round)
    stops at one whose count is k to k + slack; only those positions (per row a prefix of the
    sorted columns) are listed and the top k of them kept. Memory O(k + len(excluded) + d_out
    + d_in). Hand-written: no library selects the top-k of an implicit rank-1 matrix."""
    excluded = _check_growth_inputs(row, col, k, excluded)
    d_out, d_in = row.numel(), col.numel()
    device = row.device
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    if d_out * d_in - excluded.numel() < k:
        raise RuntimeError(f"fewer inactive positions ({d_out * d_in - excluded.numel()}) than "
                           f"entries to grow ({k})")
    # + 0.0 turns -0.0 into +0.0: non-negative floats then sort like their int32 bit patterns.
    row, col = _within_fp32_range(row.float() + 0.0, col.float() + 0.0)
    col_ascending, ascending_order = torch.sort(col)
    excluded_rows = excluded // d_in
    excluded_cols = excluded - excluded_rows * d_in
    excluded_scores = row.index_select(0, excluded_rows) * col.index_select(0, excluded_cols)
    excluded_bits = torch.sort(excluded_scores.view(torch.int32)).values

    def count_per_row(bits: Tensor) -> Tensor:
        return _columns_reaching(row, col_ascending, bits.view(torch.float32))

    def non_excluded(per_row: Tensor, bits: Tensor) -> Tensor:
        return per_row.sum(0) - (excluded.numel() - torch.searchsorted(excluded_bits, bits))

    # Search T with k <= #{non-excluded scores >= T} <= k + slack, or T the k-th score itself
    # (high = low + 1) when ties make every count above k + slack.
    slack = k // 8 + d_in
    low = _lower_bound_bits(row, col_ascending.flip(0), k + excluded.numel())
    high = _float_bits(row.max() * col_ascending[-1]) + 1
    probes_per_round = max(2, chunk_elements // d_out)
    while True:
        step = max(1, -(-(high - low) // probes_per_round))
        probes = torch.arange(low, high, step, dtype=torch.int32, device=device)
        per_row = count_per_row(probes)
        counts = non_excluded(per_row, probes)
        passed = int((counts >= k).sum())  # >= 1: probes[0] = low always passes
        low, at_least, count_low = int(probes[passed - 1]), per_row[:, passed - 1], int(counts[passed - 1])
        if passed < probes.numel():
            high = int(probes[passed])
        if count_low <= k + slack or high - low == 1:
            break
    lengths = at_least
    if count_low > k + slack:  # ties at T: list them only in rows up to the k-th one
        above = count_per_row(torch.tensor([high], dtype=torch.int32, device=device))[:, 0]
        tied = at_least - above - torch.bincount(excluded_rows[excluded_scores == _bits_float(low)],
                                                 minlength=d_out)
        missing = k - int(non_excluded(above[:, None], torch.tensor([high], device=device)))
        last_row = torch.searchsorted(torch.cumsum(tied, 0), torch.tensor([missing], device=device))
        lengths = torch.where(torch.arange(d_out, device=device) <= last_row, at_least, above)

    rows, cols = _listed_positions(lengths, ascending_order.flip(0), excluded_rows,
                                   excluded_cols)
    flat = rows * d_in + cols
    if flat.numel() == k:
        return flat
    scores = row.index_select(0, rows) * col.index_select(0, cols)
    kth = torch.kthvalue(scores, flat.numel() - k + 1).values  # the k-th largest
    above_kth = flat.index_select(0, (scores > kth).nonzero().squeeze(1))
    ties = flat.index_select(0, (scores == kth).nonzero().squeeze(1))
    return torch.cat([above_kth, torch.sort(ties).values[: k - above_kth.numel()]])


def _check_growth_inputs(row: Tensor, col: Tensor, k: int, excluded: Tensor) -> Tensor:
    """Validate :func:`top_outer_product`'s arguments; return ``excluded`` as int64."""
    if row.dim() != 1 or col.dim() != 1:
        raise ValueError(f"row and col accumulators must be 1-D, got shapes "
                         f"{tuple(row.shape)} and {tuple(col.shape)}")
    for name, acc in (("row", row), ("col", col)):
        if not bool((torch.isfinite(acc) & (acc >= 0)).all()):
            raise ValueError(f"{name} accumulator must be finite and non-negative")
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    excluded = excluded.long().reshape(-1)
    if excluded.numel() and (
        int(excluded[0]) < 0 or int(excluded[-1]) >= row.numel() * col.numel()
        or not bool((excluded[1:] > excluded[:-1]).all())
    ):
        raise ValueError("excluded must hold strictly increasing flat indices in "
                         f"[0, {row.numel() * col.numel()})")
    return excluded


def _within_fp32_range(row: Tensor, col: Tensor) -> tuple[Tensor, Tensor]:
    """``row`` and ``col`` scaled by powers of two so that their largest product is about 1
    when it would overflow fp32 (SM3's accumulators of long runs: the bit-pattern search never
    ended on inf scores) or underflow it. Powers of two change only the exponents, so the
    order of the scores is kept exactly; in range, nothing changes."""
    peak = float(row.max()) * float(col.max()) if row.numel() and col.numel() else 0.0
    if peak == 0.0 or 2.0**-100 <= peak <= 2.0**100:
        return row, col

    def normalized(acc: Tensor) -> Tensor:
        exponent = math.frexp(float(acc.max()))[1]  # max = m 2^e, m in [0.5, 1)
        return (acc.double() * 2.0**-exponent).float()  # exact in fp64, exact back in fp32

    return normalized(row), normalized(col)


def _float_bits(value: Tensor) -> int:
    """The bit pattern of a non-negative fp32 scalar; such patterns sort like the values."""
    return int(value.reshape(1).view(torch.int32))


def _bits_float(bits: int) -> float:
    return float(torch.tensor([bits], dtype=torch.int32).view(torch.float32))


def _lower_bound_bits(row: Tensor, col_desc: Tensor, count: int) -> int:
    """Bits of a score at least ``count`` positions reach: the best a x b block of the top a
    rows and top b columns with a * b >= count (its corner reaches it, and so does all of it)."""
    row_desc = torch.sort(row, descending=True).values
    a = torch.arange(1, row.numel() + 1, device=row.device)
    b = torch.div(count + a - 1, a, rounding_mode="floor")
    fits = b <= col_desc.numel()
    return _float_bits((row_desc[fits] * col_desc[b[fits] - 1]).max())


def _columns_reaching(row: Tensor, col_ascending: Tensor, thresholds: Tensor) -> Tensor:
    """[d_out, len(thresholds)] counts #{j : fl32(row_i * col_j) >= t}, exactly.

    fl32(r * c) rises with c, so the count is the number of columns >= the smallest fp32 c
    whose product reaches t. t / r lands within a few ulps of that c; step to it exactly."""
    r, t = row[:, None], thresholds[None, :]
    smallest = t / r
    while True:
        lower = torch.nextafter(smallest, torch.zeros_like(smallest))
        step_down = (r * lower >= t) & (smallest > 0)
        if not bool(step_down.any()):
            break
        smallest = torch.where(step_down, lower, smallest)
    while True:
        step_up = r * smallest < t
        if not bool(step_up.any()):
            break
        smallest = torch.where(step_up, torch.nextafter(smallest, torch.full_like(smallest, math.inf)),
                               smallest)
    counts = col_ascending.numel() - torch.searchsorted(col_ascending, smallest)
    return torch.where(t == 0, col_ascending.numel(), counts)  # 0 / 0 rows still reach t = 0


def _listed_positions(lengths: Tensor, col_descending: Tensor, excluded_rows: Tensor,
                      excluded_cols: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, cols) of the first ``lengths[i]`` columns of ``col_descending`` in every row i,
    less the excluded positions (found by their column's rank, without a search)."""
    device = lengths.device
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    ranks = torch.arange(rows.numel(), device=device) - starts.index_select(0, rows)
    rank_of_col = torch.empty_like(col_descending)
    rank_of_col[col_descending] = torch.arange(col_descending.numel(), device=device)
    excluded_ranks = rank_of_col.index_select(0, excluded_cols)
    listed = (excluded_ranks < lengths.index_select(0, excluded_rows)).nonzero().squeeze(1)
    keep = torch.ones(rows.numel(), dtype=torch.bool, device=device)
    keep[starts.index_select(0, excluded_rows.index_select(0, listed))
         + excluded_ranks.index_select(0, listed)] = False
    kept = keep.nonzero().squeeze(1)
    return rows.index_select(0, kept), col_descending.index_select(0, ranks.index_select(0, kept))


# ---- the model, its state, the timing ----------------------------------------------------

def build(shapes: str, device: str, rank: int, selection: str, seed: int = 0):
    """(selector, optimizer) on a random-weight Llama with random deltas and statistics."""
    layers, hidden, mlp = SHAPES[shapes]
    config = LlamaConfig(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                         num_attention_heads=hidden // 128, num_key_value_heads=hidden // 128,
                         vocab_size=128)
    with torch.device(device):
        base = LlamaForCausalLM(config).to(torch.bfloat16)
    budget = layers * rank * (4 * 2 * hidden + 3 * (hidden + mlp))  # LoRA rank's parameters
    model = get_sft_model(base, SftConfig(num_tunable_weights=budget, selection=selection))
    generator = torch.Generator().manual_seed(seed)
    optimizer = (SftSM3 if selection == "ma" else SftAdamW)(model.trainable_parameters_groups)
    selector = SftSelector(model, optimizer, total_steps=1000)
    for _, layer in model.sft_layers():
        n, (d_out, d_in) = layer.num_active, layer.shape
        layer.values.data.copy_(torch.randn(n, generator=generator))
        if selection == "ma":  # sums of squared gradients: spread over orders of magnitude
            row, col = optimizer.accumulators(layer.values)
            row.copy_(torch.exp(2 * torch.randn(d_out, generator=generator)) * 1e-6)
            col.copy_(torch.exp(2 * torch.randn(d_in, generator=generator)) * 1e-6)
        else:
            grad_sum = torch.randn(n, generator=generator)
            layer.estimator = CandidateEstimator.restore(
                random_subset(d_out * d_in, n, generator).to(device=device, dtype=layer.indices.dtype),
                grad_sum.to(device), (grad_sum**2).to(device), 5, layer.shape)
    return selector


def timed_rounds(selector: SftSelector, first: bool, repeats: int) -> dict[str, list[float]]:
    """Seconds per reselection of each contender, both from the same saved state each time;
    checks that they grow the same entries."""
    layers = [layer for _, layer in selector.model.sft_layers()]
    saved = [(layer.indices.clone(), layer.values.detach().clone(), layer.grown_at.clone())
             for layer in layers]
    selector.completed_steps = selector.config.accumulation_steps if first else 200
    reselections = 0 if first else 1
    contenders = {"old": lambda: per_layer_reselect(selector), "new": selector.reselect}
    device = layers[0].values.device
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    grown: dict[str, list[Tensor]] = {}
    for rep in range(repeats + 1):  # the first round warms up and checks
        names = list(contenders)[rep % 2:] + list(contenders)[: rep % 2]
        for name in names:
            for layer, (indices, values, grown_at) in zip(layers, saved):
                layer.indices.copy_(indices)
                layer.values.data.copy_(values)
                layer.grown_at.copy_(grown_at)
            selector.model.num_reselections = reselections
            torch.cuda.synchronize(device) if device.type == "cuda" else None
            start = time.perf_counter()
            contenders[name]()
            torch.cuda.synchronize(device) if device.type == "cuda" else None
            if rep:
                samples[name].append(time.perf_counter() - start)
            else:
                grown[name] = [torch.sort(layer.indices.long()).values for layer in layers]
    for old, new in zip(grown["old"], grown["new"]):
        if not torch.equal(old, new):
            raise AssertionError("old and new reselection grew different entries")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="reduced")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rank", type=int, default=64, help="LoRA rank of the equal budget")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layers, hidden, mlp = SHAPES[args.shapes]
    print(machine_line())
    print(f"{args.shapes}: {layers} layers x 7 matrices (hidden {hidden}, MLP {mlp}), LoRA "
          f"r={args.rank} budget, {args.device}, wall-clock median of {args.repeats} repeats\n")
    print("| method | reselection | old s | new s | speed-up |")
    print("|---|---|---|---|---|")
    for selection in ("ma", "ag"):
        selector = build(args.shapes, args.device, args.rank, selection)
        for label, first in (("first", True), ("later", False)):
            samples = timed_rounds(selector, first, args.repeats)
            old, new = (statistics.median(samples[name]) for name in ("old", "new"))
            print(f"| sft-{selection} | {label} | {old:.3f} | {new:.3f} | {old / new:.1f}x |")
        del selector


if __name__ == "__main__":
    main()
