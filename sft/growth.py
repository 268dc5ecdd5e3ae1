"""SFT-MA's growth search: the top-k positions of an implicit rank-1 score matrix row_i * col_j
(SM3's row and column accumulators), exactly, without building the dense scores.

The selector (:mod:`sft.selection`) decides when and how many; this module only finds where.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# SFT-MA growth's threshold search counts d_out x (this // d_out) candidate thresholds per
# round (more probes, fewer rounds; 2**12 to 2**14 measured fastest on SmolLM2-135M shapes).
MA_CHUNK_ELEMENTS = 1 << 13


def top_outer_product(row: Tensor, col: Tensor, k: int, excluded: Tensor,
                      chunk_elements: int = MA_CHUNK_ELEMENTS) -> Tensor:
    """Flat row-major indices of the ``k`` largest scores fl32(row_i * col_j) over positions
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
