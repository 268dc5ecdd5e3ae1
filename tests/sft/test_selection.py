"""Drop-and-grow behaviour of SftSelector on tiny Llamas (SFT-AG and SFT-MA)."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import tiny_llama, token_batch
from sft import SftAdamW, SftConfig, SftSelector, SftSM3, get_sft_model
from sft.growth import top_outer_product
from sft.selection import replacement_count


def _train(sft_model, opt, selector, steps, seed=0, micro_batches=1, on_step=None):
    for step in range(steps):
        for micro in range(micro_batches):
            ids = token_batch(seed + step * micro_batches + micro)
            loss = sft_model(input_ids=ids, labels=ids).loss / micro_batches
            loss.backward()
        opt.step()
        opt.zero_grad()
        selector.step()
        if on_step is not None:
            on_step(step + 1)


def _setup(selection="ag", total=30, lr=1e-2, **config):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    cfg = SftConfig(density=0.05, selection=selection, reselection_steps=6,
                    accumulation_steps=2, **config)
    model = get_sft_model(base, cfg)
    opt_cls = SftAdamW if selection == "ag" else SftSM3
    opt = opt_cls(model.trainable_parameters_groups, lr=lr)
    return model, reference, opt, SftSelector(model, opt, total)


def test_initial_output_identical(model):
    reference = copy.deepcopy(model)
    ids = token_batch(0)
    sft_model = get_sft_model(model, SftConfig(density=0.1))
    assert torch.equal(sft_model(input_ids=ids).logits, reference(input_ids=ids).logits)


@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_invariants_through_reselections(selection):
    model, reference, opt, selector = _setup(selection)
    counts = {name: layer.num_active for name, layer in model.sft_layers()}
    snapshots = {}

    def check(step):
        for name, layer in model.sft_layers():
            idx = layer.indices.long()
            assert layer.num_active == counts[name]
            assert torch.unique(idx).numel() == idx.numel()
            base_w = reference.get_submodule(name).weight
            merged = layer.merged_weight(torch.float32)
            changed = (merged != base_w).reshape(-1).nonzero().squeeze(1)
            assert set(changed.tolist()) <= set(idx.tolist())  # only active entries change
            previous = snapshots.get(name)
            if previous is not None:  # dropped weights are back to exactly pretrained
                dropped = torch.tensor(sorted(set(previous) - set(idx.tolist())), dtype=torch.long)
                assert torch.equal(merged.reshape(-1)[dropped], base_w.reshape(-1)[dropped])
            snapshots[name] = idx.tolist()

    _train(model, opt, selector, 30, on_step=check)
    assert selector.num_reselections == 5  # steps 2, 8, 14, 20, 26


@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_first_reselection_replaces_all_then_schedule(selection):
    model, _, opt, selector = _setup(selection, total=30)
    _train(model, opt, selector, 2)
    for _, layer in model.sft_layers():
        assert bool((layer.grown_at == 1).all())
    _train(model, opt, selector, 6, seed=100)  # second reselection at t = 8
    for _, layer in model.sft_layers():
        k = int(0.2 * (30 - 8) / 30 * layer.num_active)
        assert int((layer.grown_at == 2).sum()) == k
        assert replacement_count(layer.num_active, 8, 30, 0.2, "linear", False) == k


def test_cosine_schedule_counts():
    assert replacement_count(1000, 0, 100, 0.2, "cosine", False) == 200
    assert replacement_count(1000, 50, 100, 0.2, "cosine", False) == 100
    assert replacement_count(1000, 100, 100, 0.2, "cosine", False) == 0
    assert replacement_count(1000, 75, 100, 0.2, "linear", False) == 50
    assert replacement_count(1000, 75, 100, 0.2, "linear", True) == 1000


def test_dropped_state_cleared_ma():
    model, _, _, _ = _setup("ma")
    opt = SftSM3(model.trainable_parameters_groups, lr=1e-2, momentum=0.9)
    selector = SftSelector(model, opt, 30)
    _train(model, opt, selector, 8)  # reselections at 2 and 8
    for _, layer in model.sft_layers():
        fresh = layer.grown_at == 2
        assert bool(fresh.any())
        assert torch.equal(layer.values[fresh], torch.zeros(int(fresh.sum())))
        assert bool((opt.state[layer.values]["momentum_buffer"][fresh] == 0).all())


def _dense_step_grads(reference, names, ids_list, micro_batches):
    """Full dense dW per optimizer step of the frozen reference model (lr = 0 keeps W fixed)."""
    grads = []
    for step_ids in ids_list:
        reference.zero_grad()
        for ids in step_ids:
            (reference(input_ids=ids, labels=ids).loss / micro_batches).backward()
        grads.append({n: reference.get_submodule(n).weight.grad.clone() for n in names})
    return grads


@pytest.mark.parametrize("micro_batches", [1, 2])
def test_ag_growth_and_seeded_moments_match_dense_reference(micro_batches):
    """With lr = 0 the weights never move, so the estimation phase's statistics can be
    recomputed from dense gradients: candidates = top-K of the first micro-batch, grown = top-k
    |mean step gradient|, Adam seeded at full-step scale with age gamma. With 2 micro-batches of
    the same data at loss / 2, everything must equal the single-batch run."""
    model, reference, _, _ = _setup("ag")
    opt = SftAdamW(model.trainable_parameters_groups, lr=0.0, betas=(0.9, 0.99))
    selector = SftSelector(model, opt, 30)
    reference.requires_grad_(True)
    names = [n for n, _ in model.sft_layers()]
    steps = [[token_batch(s)] * micro_batches for s in range(2)]
    dense = _dense_step_grads(reference, names, steps, micro_batches)
    for step_ids in steps:
        for ids in step_ids:
            (model(input_ids=ids, labels=ids).loss / micro_batches).backward()
        opt.step()
        opt.zero_grad()
        selector.step()
    for name, layer in model.sft_layers():
        first_micro = dense[0][name] / micro_batches
        n = layer.num_active
        candidates = torch.topk(first_micro.reshape(-1).abs(), n).indices
        mean = (dense[0][name] + dense[1][name]).reshape(-1)[candidates] / 2
        mean_sq = (dense[0][name] ** 2 + dense[1][name] ** 2).reshape(-1)[candidates] / 2
        order = torch.topk(mean.abs(), n).indices
        expected = dict(zip(candidates[order].tolist(), zip(mean[order], mean_sq[order])))
        assert set(layer.indices.tolist()) == set(expected)
        state = opt.state[layer.values]
        for pos, idx in enumerate(layer.indices.tolist()):
            m, v = expected[idx]
            torch.testing.assert_close(state["exp_avg"][pos], (1 - 0.9**2) * m)
            torch.testing.assert_close(state["exp_avg_sq"][pos], (1 - 0.99**2) * v)
        assert bool((opt.ages(layer.values) == 2).all())


def test_ag_step_gradient_is_folded_before_the_optimizer_steps():
    """The candidates' step gradient (4 bytes each) is folded into the estimation statistics in
    the optimizer's step pre-hook, so it never coexists with the optimizer's temporaries, and
    the selector's step does not count that optimizer step twice."""
    model, _, opt, selector = _setup("ag")
    seen = []

    def inspect(*_):
        estimators = [layer.estimator for _, layer in model.sft_layers()]
        seen.append([(e.in_middle_of_step, e.num_steps) for e in estimators if e is not None])

    opt.register_step_pre_hook(inspect)  # after the selector's own, so it sees the fold
    _train(model, opt, selector, 1)
    assert seen and seen[0] and all(pair == (False, 1) for pair in seen[0])
    assert all(layer.estimator.num_steps == 1 for _, layer in model.sft_layers())
    # a step whose optimizer did not run its step() (no pre-hook) is still folded by the
    # selector: the first reselection, at this second step, seeds every grown value with the
    # phase's two steps, so each is two steps old
    ids = token_batch(99)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.zero_grad()
    selector.step()
    assert selector.num_reselections == 1
    assert all(bool((opt.ages(layer.values) == 2).all()) for _, layer in model.sft_layers())


def test_ag_folds_each_micro_batch_when_a_step_has_one():
    """Declared one micro-batch a step (no GradScaler), the estimation keeps no step gradient
    after a backward (4 bytes per candidate less through it) and gives bit for bit the same
    statistics, indices, values and moments as keeping it; a second micro-batch is refused."""
    runs = {}
    for declared in (None, 1):
        model, _, opt, selector = _setup("ag")
        selector.bind(micro_batches_per_step=declared)
        ids = token_batch(0)
        model(input_ids=ids, labels=ids).loss.backward()
        held = [layer.estimator._step_grad is not None
                for _, layer in model.sft_layers() if layer.estimator is not None]
        opt.step()
        opt.zero_grad()
        selector.step()
        _train(model, opt, selector, 7, seed=1)  # reselections at steps 2 and 8
        runs[declared] = (model, opt, held)
    (kept, kept_opt, kept_held), (folded, folded_opt, folded_held) = runs[None], runs[1]
    assert kept_held and all(kept_held) and not any(folded_held)
    for (_, a), (_, b) in zip(kept.sft_layers(), folded.sft_layers()):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(kept_opt.state[a.values][key], folded_opt.state[b.values][key])

    model, _, opt, selector = _setup("ag")
    selector.bind(micro_batches_per_step=1)
    with pytest.raises(RuntimeError, match="micro_batches_per_step"):
        _train(model, opt, selector, 1, micro_batches=2)


def _dense_growth(row, col, k, excluded):
    """Reference: the dense fp32 scores, excluded set to -inf, top k by (score desc, flat asc)."""
    scores = (row.float()[:, None] * col.float()[None, :]).reshape(-1)
    scores[excluded] = -math.inf
    return torch.sort(torch.sort(scores, descending=True, stable=True).indices[:k]).values


def _growth(row, col, k, excluded, **kwargs):
    return torch.sort(top_outer_product(row, col, k, excluded, **kwargs)).values


def _accumulators(kind, d_out, d_in, g):
    if kind == "continuous":
        return torch.rand(d_out, generator=g), torch.rand(d_in, generator=g)
    if kind == "few values":  # many exact ties, and zero rows/columns
        return (torch.randint(0, 3, (d_out,), generator=g).float(),
                torch.randint(0, 3, (d_in,), generator=g).float())
    if kind == "zeros":
        return torch.zeros(d_out), torch.zeros(d_in)
    # bf16 with a wide range: products that round to equal fp32 scores
    return (torch.rand(d_out, generator=g).bfloat16(),
            (torch.rand(d_in, generator=g) ** 4).bfloat16())


@pytest.mark.parametrize("kind", ["continuous", "few values", "zeros", "bf16"])
def test_top_outer_product_equals_dense_topk_over_random_cases(kind):
    g = torch.Generator().manual_seed(len(kind))
    for _ in range(40):
        d_out, d_in = (int(x) for x in torch.randint(1, 40, (2,), generator=g))
        row, col = _accumulators(kind, d_out, d_in, g)
        numel = d_out * d_in
        num_excluded = int(torch.randint(0, numel + 1, (1,), generator=g))
        excluded = torch.sort(torch.randperm(numel, generator=g)[:num_excluded]).values
        k = int(torch.randint(0, numel - num_excluded + 1, (1,), generator=g))
        expected = _dense_growth(row, col, k, excluded)
        for probes in (2, 3, 64):  # few and many thresholds per round
            assert torch.equal(_growth(row, col, k, excluded, probes_per_round=probes),
                               expected), (d_out, d_in, k, num_excluded, probes)


def test_top_outer_product_edge_cases():
    g = torch.Generator().manual_seed(0)
    row, col = torch.rand(37, generator=g), torch.rand(23, generator=g)
    excluded = torch.sort(torch.randperm(37 * 23, generator=g)[:100]).values
    assert torch.equal(_growth(row, col, 50, excluded), _dense_growth(row, col, 50, excluded))
    assert top_outer_product(row, col, 0, excluded).numel() == 0
    inactive = torch.ones(37 * 23, dtype=torch.bool)
    inactive[excluded] = False
    assert torch.equal(_growth(row, col, 37 * 23 - 100, excluded), inactive.nonzero().squeeze(1))
    # all-zero accumulators: everything ties, the smallest non-excluded flat indices win
    zeros = _growth(torch.zeros(37), torch.zeros(23), 300, excluded)
    assert torch.equal(zeros, inactive.nonzero().squeeze(1)[:300])
    # -0.0 is zero too
    assert torch.equal(_growth(-torch.zeros(37), col, 300, excluded), zeros)
    with pytest.raises(RuntimeError, match="fewer inactive positions"):
        top_outer_product(row, col, 37 * 23 - 99, excluded)


def test_top_outer_product_is_deterministic_under_ties():
    """Ties are broken by flat index, not by whatever order a top-k kernel returns: the same
    call, any number of probes per round, gives the same entries in the same order (identical
    across ranks)."""
    row = torch.tensor([2.0, 1.0, 2.0, 0.0, 1.0] * 8)
    col = torch.tensor([1.0, 2.0, 2.0, 1.0] * 9)
    excluded = torch.arange(0, 40 * 36, 7)
    first = top_outer_product(row, col, 333, excluded)
    for probes in (2, 5, 100):
        assert torch.equal(top_outer_product(row, col, 333, excluded,
                                             probes_per_round=probes), first)
    assert torch.equal(torch.sort(first).values, _dense_growth(row, col, 333, excluded))


def test_top_outer_product_rejects_bad_inputs():
    row, col, none = torch.rand(4), torch.rand(5), torch.empty(0, dtype=torch.long)
    with pytest.raises(ValueError, match="non-negative"):
        top_outer_product(-row, col, 1, none)
    with pytest.raises(ValueError, match="finite"):
        top_outer_product(row, col.clone().fill_(math.nan), 1, none)
    with pytest.raises(ValueError, match="strictly increasing"):
        top_outer_product(row, col, 1, torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="strictly increasing"):
        top_outer_product(row, col, 1, torch.tensor([20]))
    with pytest.raises(ValueError, match="1-D"):
        top_outer_product(row[:, None], col, 1, none)


def test_top_outer_product_never_builds_dense_scores():
    """A 2**18 x 2**18 matrix: its dense scores alone would take 256 GiB, so any dense scan
    fails (or never ends) here. The top k non-excluded entries lie in the top k + |excluded|
    rows and columns, which gives a small dense reference."""
    g = torch.Generator().manual_seed(0)
    side, k = 1 << 18, 500
    row, col = torch.rand(side, generator=g), torch.rand(side, generator=g)
    top_rows = torch.topk(row, 700).indices
    top_cols = torch.topk(col, 700).indices
    block = (top_rows[:, None] * side + top_cols[None, :]).reshape(-1)
    excluded = torch.sort(block[torch.randperm(block.numel(), generator=g)[:200]]).values
    block = torch.sort(block).values  # flat order, for the tie-break by stable sort
    block_scores = row[block // side] * col[block % side]
    block_scores[torch.isin(block, excluded)] = -math.inf
    best = torch.sort(block_scores, descending=True, stable=True).indices[:k]
    assert torch.equal(_growth(row, col, k, excluded), torch.sort(block[best]).values)
    # Everything tied at 0: only the first rows' ties are listed, not all 2**36 positions.
    zeros = torch.zeros(side)
    inactive = torch.arange(k + 300)
    inactive = inactive[~torch.isin(inactive, excluded)][:k]
    assert torch.equal(_growth(zeros, zeros, k, excluded), inactive)


def test_ma_grows_by_sm3_accumulators():
    model, _, opt, selector = _setup("ma")
    _train(model, opt, selector, 7)
    before = {n: layer.indices.clone() for n, layer in model.sft_layers()}
    _train(model, opt, selector, 1, seed=50)  # reselection at t = 8
    for name, layer in model.sft_layers():
        fresh = layer.grown_at == 2
        row, col = opt.accumulators(layer.values)  # reselection ran after this step's update
        scores = torch.outer(row, col).reshape(-1)
        scores[before[name].long()] = -math.inf
        k = int(fresh.sum())
        best = torch.topk(scores, k).values
        grown_scores = torch.outer(row, col).reshape(-1)[layer.indices[fresh].long()]
        torch.testing.assert_close(torch.sort(grown_scores).values, torch.sort(best).values)


def test_selector_rejects_wrong_optimizer(model):
    sft_model = get_sft_model(model, SftConfig(density=0.05, selection="ma"))
    with pytest.raises(TypeError, match="SftSM3"):
        SftSelector(sft_model, SftAdamW(sft_model.trainable_parameters_groups), 10)
    with pytest.raises(TypeError, match="SftAdamW or SftSM3"):
        SftSelector(sft_model, torch.optim.AdamW(sft_model.trainable_parameters_groups), 10)


@pytest.mark.parametrize("selection", ["ag", "ma"])
def test_resume_mid_estimation_phase_equals_uninterrupted_run(tmp_path, selection):
    from sft import SftModel

    straight, _, opt, selector = _setup(selection, total=12)
    _train(straight, opt, selector, 10)

    first, _, opt, selector = _setup(selection, total=12)
    _train(first, opt, selector, 5)  # phase for the reselection at 6 runs over steps 5 and 6
    first.save_pretrained(tmp_path)
    selector.save(tmp_path)
    opt_state = opt.state_dict()

    resumed = SftModel.from_pretrained(tiny_llama(), tmp_path, is_trainable=True)
    opt_cls = SftAdamW if selection == "ag" else SftSM3
    opt = opt_cls(resumed.trainable_parameters_groups, lr=1e-2)
    opt.load_state_dict(opt_state)
    selector = SftSelector(resumed, opt, 12)
    selector.load(tmp_path)
    assert selector.completed_steps == 5 and selector.num_reselections == 1
    _train(resumed, opt, selector, 5, seed=5)
    for (_, a), (_, b) in zip(straight.sft_layers(), resumed.sft_layers()):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.grown_at, b.grown_at)
        torch.testing.assert_close(a.values, b.values)


def test_bf16_base_with_fp32_deltas_trains_and_reselects():
    model = get_sft_model(tiny_llama(dtype=torch.bfloat16),
                          SftConfig(density=0.05, reselection_steps=3, accumulation_steps=2))
    opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, 10)
    _train(model, opt, selector, 1)
    for _, layer in model.sft_layers():
        assert layer.values.dtype == torch.float32
        assert layer.estimator.grad_sum.dtype == torch.float32
    _train(model, opt, selector, 1, seed=1)
    assert selector.num_reselections == 1
    for _, layer in model.sft_layers():
        assert bool((layer.grown_at == 1).all()) and layer.base_layer.weight.dtype == torch.bfloat16
