"""SFT-MA's batched growth search against one matrix at a time, and the reselection's host
synchronizations (on a GPU each one stalls the launch queue: their number must not grow with
the number of matrices)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sft.growth
from conftest import tiny_llama, token_batch
from sft import SftAdamW, SftConfig, SftSelector, SftSM3, get_sft_model
from sft.growth import top_outer_product, top_outer_products


def _dense_growth(row, col, k, excluded):
    """Reference: the dense fp32 scores, excluded set to -inf, top k by (score desc, flat asc)."""
    scores = (row.float()[:, None] * col.float()[None, :]).reshape(-1)
    scores[excluded] = -math.inf
    return torch.sort(torch.sort(scores, descending=True, stable=True).indices[:k]).values


def _normalized(acc):
    """``acc`` scaled by a power of two to a maximum in [0.5, 1): exact, as fp64 then fp32."""
    return (acc.double() * 2.0 ** -math.frexp(float(acc.max()))[1]).float()


def _case(kind, d_out, d_in, g):
    if kind == "continuous":
        return torch.rand(d_out, generator=g), torch.rand(d_in, generator=g)
    if kind == "ties":  # many exact ties, and zero rows/columns
        return (torch.randint(0, 3, (d_out,), generator=g).float(),
                torch.randint(0, 3, (d_in,), generator=g).float())
    if kind == "overflow":  # products beyond fp32: this matrix alone is rescaled
        return torch.rand(d_out, generator=g) * 1e25, torch.rand(d_in, generator=g) * 1e25
    if kind == "underflow":
        return torch.rand(d_out, generator=g) * 1e-30, torch.rand(d_in, generator=g) * 1e-30
    return torch.zeros(d_out), torch.zeros(d_in)


def _batch(g, d_out, d_in, kinds):
    """Matrices of one shape, each of its own kind, with their own k and excluded set."""
    rows, cols, ks, excluded = [], [], [], []
    numel = d_out * d_in
    for kind in kinds:
        row, col = _case(kind, d_out, d_in, g)
        num_excluded = int(torch.randint(0, numel + 1, (1,), generator=g))
        rows.append(row)
        cols.append(col)
        excluded.append(torch.sort(torch.randperm(numel, generator=g)[:num_excluded]).values)
        ks.append(int(torch.randint(0, numel - num_excluded + 1, (1,), generator=g)))
    return torch.stack(rows), torch.stack(cols), ks, excluded


KINDS = ["continuous", "ties", "overflow", "underflow", "zeros"]


def test_batched_search_equals_one_matrix_at_a_time_and_dense_topk():
    g = torch.Generator().manual_seed(0)
    for trial in range(25):
        d_out, d_in = (int(x) for x in torch.randint(1, 30, (2,), generator=g))
        kinds = [KINDS[int(i)] for i in torch.randint(0, len(KINDS), (6,), generator=g)]
        rows, cols, ks, excluded = _batch(g, d_out, d_in, kinds)
        for probes in (2, 7):
            batched = top_outer_products(rows, cols, ks, excluded, probes_per_round=probes)
            for b, got in enumerate(batched):
                single = top_outer_product(rows[b], cols[b], ks[b], excluded[b],
                                           probes_per_round=probes)
                assert torch.equal(got, single), (trial, kinds[b])  # same entries, same order
                row, col = rows[b], cols[b]
                if kinds[b] in ("overflow", "underflow"):  # the fp32 scores of both max ~1
                    row, col = _normalized(row), _normalized(col)
                expected = _dense_growth(row, col, ks[b], excluded[b])
                assert torch.equal(torch.sort(got).values, expected), (trial, kinds[b])


def test_batches_cut_by_listing_size_give_the_same_result(monkeypatch):
    g = torch.Generator().manual_seed(1)
    rows, cols, ks, excluded = _batch(g, 13, 17, ["ties", "continuous", "overflow"] * 3)
    whole = top_outer_products(rows, cols, ks, excluded)
    monkeypatch.setattr(sft.growth, "MAX_LISTED", 40)  # about one matrix per batch
    for got, expected in zip(top_outer_products(rows, cols, ks, excluded), whole):
        assert torch.equal(got, expected)


def test_batched_search_rejects_bad_inputs():
    rows, cols = torch.rand(3, 4), torch.rand(3, 5)
    none = [torch.empty(0, dtype=torch.long)] * 3
    with pytest.raises(ValueError, match="matrices, d_out"):
        top_outer_products(rows, cols[:2], [1, 1, 1], none)
    with pytest.raises(ValueError, match="3 matrices but 2 counts"):
        top_outer_products(rows, cols, [1, 1], none)
    bad = rows.clone()
    bad[2, 1] = math.inf
    with pytest.raises(ValueError, match="row accumulator must be finite"):
        top_outer_products(bad, cols, [1, 1, 1], none)
    with pytest.raises(ValueError, match="strictly increasing"):  # each set on its own
        top_outer_products(rows, cols, [1, 1, 1], [torch.tensor([3]), torch.tensor([1, 2]),
                                                   torch.tensor([5, 5])])
    with pytest.raises(RuntimeError, match="fewer inactive positions"):
        top_outer_products(rows, cols, [1, 20, 1], [torch.tensor([0])] * 3)


class _HostWaits(TorchDispatchMode):
    """Counts the operations that make the host wait for a GPU: reading a value (item, int,
    bool, float) and those whose output size depends on the data (nonzero, boolean masks,
    unique, bincount, repeat_interleave without its output size); plus copies to the host (counted
    by :func:`_count_host_waits`)."""

    SIZED_BY_DATA = {"nonzero", "masked_select", "unique", "_unique", "_unique2",
                     "unique_consecutive", "bincount", "unique_dim"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        masks = [a for a in args if isinstance(a, (list, tuple))
                 for t in a if isinstance(t, torch.Tensor) and t.dtype == torch.bool]
        if (name == "_local_scalar_dense" or name in self.SIZED_BY_DATA
                or (name == "repeat_interleave" and kwargs.get("output_size") is None)
                or (name in ("index", "index_put", "index_put_") and masks)):
            self.count += 1
        return func(*args, **kwargs)


def _count_host_waits(monkeypatch, call) -> int:
    counter = _HostWaits()
    for method in ("tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, **kwargs):
            counter.count += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, method, counted)
    with counter:
        call()
    monkeypatch.undo()
    return counter.count


def test_batched_search_waits_on_the_host_a_fixed_number_of_times(monkeypatch):
    g = torch.Generator().manual_seed(2)
    waits = []
    for matrices in (2, 12):
        rows, cols = torch.rand(matrices, 9, generator=g), torch.rand(matrices, 11, generator=g)
        rows[0] = torch.randint(0, 3, (9,), generator=g)  # ties
        excluded = [torch.sort(torch.randperm(99, generator=g)[:20]).values for _ in range(matrices)]
        ks = [30] * matrices
        waits.append(_count_host_waits(
            monkeypatch, lambda: top_outer_products(rows, cols, ks, excluded)))
    assert waits[0] == waits[1] and waits[0] <= 4


@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_reselection_and_its_log_wait_on_the_host_independently_of_the_layer_count(
        monkeypatch, selection):
    waits = {}
    for layers in (1, 3):
        model = get_sft_model(tiny_llama(layers=layers),
                              SftConfig(density=0.05, selection=selection, reselection_steps=3,
                                        accumulation_steps=2))
        opt = (SftAdamW if selection == "ag" else SftSM3)(model.trainable_parameters_groups, lr=1e-2)
        selector = SftSelector(model, opt, 10)
        for step in range(4):  # reselections at steps 2 and 5: the next one is a later one
            ids = token_batch(step)
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
            selector.step()
        selector.completed_steps += 1  # as after step 5, with the estimation phase's statistics
        waits[layers] = (_count_host_waits(monkeypatch, selector.reselect),
                         _count_host_waits(monkeypatch, selector.log_entries))
        assert selector.num_reselections == 2
        assert selector.log_entries()["sft/reselections"] == 2
    assert waits[1] == waits[3], waits
