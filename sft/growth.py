"""SFT-MA's growth search: the top-k positions of implicit rank-1 score matrices row_i * col_j
(SM3's row and column accumulators), exactly, without building the dense scores.

The selector (:mod:`sft.selection`) decides when and how many; this module only finds where.
Matrices of one shape are searched together, with a number of host synchronizations that does
not grow with their count (on a GPU, each one stalls the launch queue).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# Thresholds tried per matrix and search round. The rounds are a fixed number (enough for any
# fp32 score range), so none waits on the device to decide whether to go on; fewer probes per
# round means less work in all (total ~ P / log2 P) but more, smaller kernel launches.
PROBES_PER_ROUND = 8
# Matrices searched at once list at most k + len(excluded) positions each; a batch is cut so
# that its listing stays under this many (int64 temporaries of ~1 GiB each at 2**27).
MAX_LISTED = 1 << 27
_INF_BITS = 0x7F800000  # fp32 +inf: every finite non-negative score's bits lie below


def top_outer_product(row: Tensor, col: Tensor, k: int, excluded: Tensor,
                      probes_per_round: int = PROBES_PER_ROUND) -> Tensor:
    """Flat row-major indices of the ``k`` largest scores fl32(row_i * col_j) over positions
    not in ``excluded`` (sorted flat indices); among equal scores the smaller flat index wins.
    One matrix of :func:`top_outer_products`."""
    if row.dim() != 1 or col.dim() != 1:
        raise ValueError(f"row and col accumulators must be 1-D, got shapes "
                         f"{tuple(row.shape)} and {tuple(col.shape)}")
    return top_outer_products(row[None], col[None], [k], [excluded], probes_per_round)[0]


def top_outer_products(rows: Tensor, cols: Tensor, ks: Sequence[int], excluded: Sequence[Tensor],
                       probes_per_round: int = PROBES_PER_ROUND) -> list[Tensor]:
    """For each matrix b of one shape (``rows`` [B, d_out], ``cols`` [B, d_in]): the flat
    row-major indices of the ``ks[b]`` largest scores fl32(rows[b, i] * cols[b, j]) over
    positions not in ``excluded[b]`` (sorted flat indices). Among equal scores the smaller flat
    index wins and the order returned is fixed (row-major, then by descending column
    accumulator), so every data-parallel rank grows the same entries in the same order.

    Exact, and never builds the dense scores. Sorting the columns once sorts every row's
    scores, so a threshold t's count of positions scoring >= t is a binary search per row. A
    search over t as fp32 bit patterns (``probes_per_round`` thresholds per round, a fixed
    number of rounds) finds T, the k-th largest score, exactly; the positions scoring above T
    (per row a prefix of the sorted columns) and the first ties at T in flat order are listed.
    Memory O(k + len(excluded) + d_out + d_in) per matrix; host synchronizations: two per
    batch of at most ``MAX_LISTED`` listed positions. Hand-written: no library selects the
    top-k of an implicit rank-1 matrix."""
    ks = [int(k) for k in _check_growth_inputs(rows, cols, ks, excluded)]
    if probes_per_round < 2:
        raise ValueError(f"probes_per_round must be >= 2, got {probes_per_round}")
    d_out, d_in = rows.shape[1], cols.shape[1]
    results = [torch.empty(0, dtype=torch.long, device=rows.device) for _ in ks]
    batch: list[int] = []
    listed = 0
    for b in [b for b, k in enumerate(ks) if k > 0] + [None]:
        size = None if b is None else ks[b] + excluded[b].numel()
        if batch and (b is None or listed + size > MAX_LISTED):
            found = _top_in_batch(rows[batch], cols[batch], [ks[i] for i in batch],
                                  [excluded[i].reshape(-1).long() for i in batch], probes_per_round)
            for i, flat in zip(batch, found):
                results[i] = flat
            batch, listed = [], 0
        if b is not None:
            if d_out * d_in - excluded[b].numel() < ks[b]:
                raise RuntimeError(f"fewer inactive positions ({d_out * d_in - excluded[b].numel()}) "
                                   f"than entries to grow ({ks[b]})")
            batch.append(b)
            listed += size
    return results


def _check_growth_inputs(rows: Tensor, cols: Tensor, ks: Sequence[int],
                         excluded: Sequence[Tensor]) -> Sequence[int]:
    """Validate :func:`top_outer_products`' arguments with one host synchronization."""
    if rows.dim() != 2 or cols.dim() != 2 or rows.shape[0] != cols.shape[0]:
        raise ValueError(f"rows and cols must be [matrices, d_out] and [matrices, d_in], got "
                         f"shapes {tuple(rows.shape)} and {tuple(cols.shape)}")
    if len(ks) != rows.shape[0] or len(excluded) != rows.shape[0]:
        raise ValueError(f"{rows.shape[0]} matrices but {len(ks)} counts and "
                         f"{len(excluded)} excluded sets")
    for k in ks:
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k!r}")
    numel = rows.shape[1] * cols.shape[1]
    flat = torch.cat([e.reshape(-1).long() for e in excluded]) if excluded else rows.new_zeros(0).long()
    lengths = [e.numel() for e in excluded]
    segment = torch.repeat_interleave(torch.arange(len(lengths), device=flat.device),
                                      torch.tensor(lengths, device=flat.device), output_size=flat.numel())
    increasing = (flat[1:] > flat[:-1]) | (segment[1:] != segment[:-1])
    checks = torch.stack([(torch.isfinite(rows) & (rows >= 0)).all(),
                          (torch.isfinite(cols) & (cols >= 0)).all(),
                          increasing.all() & ((flat >= 0) & (flat < numel)).all()])
    rows_ok, cols_ok, excluded_ok = checks.tolist()  # the one synchronization
    for name, ok in (("row", rows_ok), ("col", cols_ok)):
        if not ok:
            raise ValueError(f"{name} accumulator must be finite and non-negative")
    if not excluded_ok:
        raise ValueError(f"excluded must hold strictly increasing flat indices in [0, {numel})")
    return ks


def _top_in_batch(rows: Tensor, cols: Tensor, ks: list[int], excluded: list[Tensor],
                  probes_per_round: int) -> list[Tensor]:
    """:func:`top_outer_products` for matrices that each grow k >= 1 entries."""
    device = rows.device
    B, d_out = rows.shape
    d_in = cols.shape[1]
    # + 0.0 turns -0.0 into +0.0: non-negative floats then sort like their int32 bit patterns.
    rows, cols = _within_fp32_range(rows.float() + 0.0, cols.float() + 0.0)
    col_ascending, ascending_order = torch.sort(cols, dim=1, stable=True)
    k = torch.tensor(ks, device=device)
    ex = torch.cat(excluded)
    ex_lengths = torch.tensor([e.numel() for e in excluded], device=device)
    ex_matrix = torch.repeat_interleave(torch.arange(B, device=device), ex_lengths,
                                        output_size=ex.numel())
    ex_row = ex // d_in
    ex_col = ex - ex_row * d_in
    ex_score = rows[ex_matrix, ex_row] * cols[ex_matrix, ex_col]
    # Each matrix's excluded scores sorted, padded with -1 (below every threshold).
    ex_slot = torch.arange(ex.numel(), device=device) - (torch.cumsum(ex_lengths, 0) - ex_lengths)[ex_matrix]
    ex_sorted = torch.full((B, max(e.numel() for e in excluded)), -1.0, device=device)
    ex_sorted[ex_matrix, ex_slot] = ex_score
    ex_sorted = torch.sort(ex_sorted, dim=1).values

    def reaching(bits: Tensor) -> tuple[Tensor, Tensor]:
        """Per row [B, d_out, P] and non-excluded per matrix [B, P] counts of scores >= bits."""
        thresholds = bits.to(torch.int32).view(torch.float32)
        per_row = _columns_reaching(rows, col_ascending, thresholds)
        excluded_reaching = ex_sorted.shape[1] - torch.searchsorted(ex_sorted, thresholds)
        return per_row, per_row.sum(1) - excluded_reaching

    # Invariant: count(low) >= k > count(high); the search narrows [low, high) to one pattern.
    low = torch.zeros(B, dtype=torch.long, device=device)
    top_score = rows.max(1).values * col_ascending[:, -1]
    high = top_score.view(torch.int32).long() + 1
    offsets = torch.arange(probes_per_round, device=device)
    for _ in range(_rounds(_INF_BITS + 1, probes_per_round)):
        step = torch.div(high - low + probes_per_round - 1, probes_per_round,
                         rounding_mode="floor").clamp_(min=1)
        probes = low[:, None] + step[:, None] * offsets
        valid = probes < high[:, None]  # a prefix of each row of probes
        probes = torch.minimum(probes, high[:, None] - 1)
        passes = valid & (reaching(probes)[1] >= k[:, None])  # a prefix too; probes[:, 0] passes
        passed = passes.sum(1, keepdim=True)
        low = probes.gather(1, passed - 1).squeeze(1)
        beyond = passed.clamp(max=probes_per_round - 1)
        high = torch.where((passed < probes_per_round) & valid.gather(1, beyond),
                           probes.gather(1, beyond), high[:, None]).squeeze(1)
    kth = low  # bits of the k-th largest non-excluded score: everything above it is grown
    per_row, _ = reaching(torch.stack([kth, kth + 1], 1))
    at_least, above = per_row[:, :, 0], per_row[:, :, 1]
    kth_score = kth.to(torch.int32).view(torch.float32)
    ex_row_flat = ex_matrix * d_out + ex_row
    ex_tied = _count(ex_row_flat, ex_score == kth_score[ex_matrix], B * d_out).view(B, d_out)
    ex_above = _count(ex_matrix, ex_score > kth_score[ex_matrix], B)
    # Ties at T: all of them in rows before the last row needed, the first ones of that row.
    missing = k - (above.sum(1) - ex_above)  # >= 1
    cumulative_ties = torch.cumsum(at_least - above - ex_tied, 1)
    last_row = torch.searchsorted(cumulative_ties, missing[:, None])  # [B, 1]
    before = torch.where(last_row > 0, cumulative_ties.gather(1, (last_row - 1).clamp(min=0)), 0)
    take_in_last = missing[:, None] - before
    lengths = torch.where(torch.arange(d_out, device=device) <= last_row, at_least, above)

    col_descending = ascending_order.flip(1)
    rank_of_col = torch.empty_like(col_descending)
    rank_of_col.scatter_(1, col_descending, torch.arange(d_in, device=device).expand(B, d_in))
    # The last row's ties past the first take_in_last (in column order) are listed; unlist them.
    last_scores = rows.gather(1, last_row) * cols
    last_excluded = torch.zeros(B * d_in + 1, dtype=torch.bool, device=device)
    in_last = ex_row == last_row[ex_matrix, 0]
    last_excluded[torch.where(in_last, ex_matrix * d_in + ex_col, B * d_in)] = True
    eligible = (last_scores == kth_score[:, None]) & ~last_excluded[:-1].view(B, d_in)
    surplus = eligible & (torch.cumsum(eligible, 1) > take_in_last)

    lengths = lengths.reshape(-1)
    total = int(lengths.sum())  # host synchronization: the listing's size
    starts = torch.cumsum(lengths, 0) - lengths
    row_of = torch.repeat_interleave(torch.arange(B * d_out, device=device), lengths, output_size=total)
    rank = torch.arange(total, device=device) - starts[row_of]
    matrix_of = torch.div(row_of, d_out, rounding_mode="floor")
    col_of = col_descending.reshape(-1)[matrix_of * d_in + rank]
    keep = torch.ones(total + 1, dtype=torch.bool, device=device)  # [total]: a discard slot
    ex_rank = rank_of_col[ex_matrix, ex_col]
    keep[torch.where(ex_rank < lengths[ex_row_flat], starts[ex_row_flat] + ex_rank, total)] = False
    last_start = starts[torch.arange(B, device=device) * d_out + last_row[:, 0]]
    keep[torch.where(surplus, last_start[:, None] + rank_of_col, total).reshape(-1)] = False
    keep = keep[:total]
    grown = sum(ks)  # exactly k listed positions of each matrix stay, in listing order
    slot = torch.where(keep, torch.cumsum(keep, 0) - 1, grown)
    flat = torch.empty(grown + 1, dtype=torch.long, device=device)
    flat[slot] = (row_of - matrix_of * d_out) * d_in + col_of
    return list(flat[:grown].split(ks))


def _rounds(width: int, probes_per_round: int) -> int:
    """Search rounds that narrow any interval of ``width`` bit patterns to one."""
    rounds = 0
    while width > 1:
        width = -(-width // probes_per_round)
        rounds += 1
    return rounds


def _count(bins: Tensor, where: Tensor, size: int) -> Tensor:
    """Per bin, how many ``where`` are true; int64, so the result is deterministic on GPUs."""
    return torch.zeros(size, dtype=torch.long, device=bins.device).scatter_add_(0, bins, where.long())


def _within_fp32_range(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """``rows`` and ``cols`` of every matrix scaled by powers of two so that its largest
    product is about 1 when it would overflow fp32 (SM3's accumulators of long runs: the
    bit-pattern search never ended on inf scores) or underflow it. Powers of two change only
    the exponents, so the order of the scores is kept exactly; in range, nothing changes."""
    row_max = rows.max(1, keepdim=True).values.double()
    col_max = cols.max(1, keepdim=True).values.double()
    peak = row_max * col_max
    rescale = (peak != 0) & ((peak < 2.0**-100) | (peak > 2.0**100))

    def normalized(acc: Tensor, acc_max: Tensor) -> Tensor:
        exponent = torch.frexp(acc_max).exponent  # max = m 2^e, m in [0.5, 1)
        scaled = (acc.double() * torch.pow(2.0, -exponent.double())).float()  # exact, both ways
        return torch.where(rescale, scaled, acc)

    return normalized(rows, row_max), normalized(cols, col_max)


def _columns_reaching(rows: Tensor, col_ascending: Tensor, thresholds: Tensor) -> Tensor:
    """[B, d_out, P] counts #{j : fl32(rows[b, i] * col_j) >= thresholds[b, p]}, exactly.

    fl32(r * c) rises with c, so a binary search over each matrix's ascending columns finds
    the first that reaches t; its fixed ceil(log2(d_in + 1)) steps need no host decision."""
    B, d_in = col_ascending.shape
    shape = (B, rows.shape[1], thresholds.shape[1])
    r, t = rows[:, :, None], thresholds[:, None, :]
    below = torch.zeros(shape, dtype=torch.long, device=rows.device)
    step = 1 << max(d_in.bit_length() - 1, 0) if d_in else 0
    while step:
        candidate = below + step  # do the first `candidate` columns all score below t?
        fits = candidate <= d_in
        c = col_ascending.gather(1, (candidate.clamp(max=d_in) - 1).view(B, -1)).view(shape)
        below += step * (fits & (r * c < t))
        step >>= 1
    return d_in - below
