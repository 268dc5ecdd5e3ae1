"""SIFT's mechanics on a single linear layer: the mask, the freed dense gradient, the update."""
import torch

from baselines.sift import SiftAdamW


def _layer():
    torch.manual_seed(0)
    return torch.nn.Linear(8, 6, bias=False)


def test_mask_is_top_gradient_of_first_batch_and_only_it_moves():
    layer = _layer()
    x = torch.randn(4, 8)
    opt = SiftAdamW([layer.weight], [5], lr=0.1)
    before = layer.weight.detach().clone()
    expected = torch.autograd.grad(layer(x).pow(2).sum(), layer.weight)[0]
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is None  # gathered and freed by the hook
    state = opt.state[layer.weight]
    assert state["indices"].dtype == torch.int64
    assert set(state["indices"].tolist()) == set(expected.abs().reshape(-1).topk(5).indices.tolist())
    assert torch.allclose(state["grad"], expected.reshape(-1)[state["indices"]])
    opt.step()
    changed = (layer.weight.detach() != before).reshape(-1).nonzero().flatten()
    assert set(changed.tolist()) == set(state["indices"].tolist())
    # The mask stays fixed on later batches.
    first = state["indices"].clone()
    layer(torch.randn(4, 8) * 5).sum().backward()
    opt.step()
    assert torch.equal(opt.state[layer.weight]["indices"], first)


def test_mask_from_several_batches_sums_their_magnitudes():
    layer = _layer()
    xs = [torch.randn(4, 8) for _ in range(2)]
    opt = SiftAdamW([layer.weight], [4], lr=0.1, mask_batches=2)
    score = sum(torch.autograd.grad(layer(x).sum(), layer.weight)[0].abs() for x in xs)
    for x in xs:
        layer(x).sum().backward()
    assert set(opt.state[layer.weight]["indices"].tolist()) == set(score.reshape(-1).topk(4).indices.tolist())


def test_state_dict_round_trip_keeps_index_dtype_and_values():
    layer = _layer().to(torch.bfloat16)
    opt = SiftAdamW([layer.weight], [5], lr=0.1)
    layer(torch.randn(3, 8, dtype=torch.bfloat16)).sum().backward()
    opt.step()
    saved = opt.state_dict()
    fresh = SiftAdamW([layer.weight], [5], lr=0.1)
    fresh.load_state_dict(saved)
    for key, value in opt.state[layer.weight].items():
        restored = fresh.state[layer.weight][key]
        if torch.is_tensor(value):
            assert restored.dtype == value.dtype and torch.equal(restored, value), key
        else:
            assert restored == value


def test_weight_decay_pulls_towards_pretrained_values():
    deltas = []
    for wd in (0.0, 1.0):
        layer = _layer()
        opt = SiftAdamW([layer.weight], [5], lr=0.1, weight_decay=wd)
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
        for _ in range(3):  # the same gradients for both, so only the decay differs
            layer(x).sum().backward()
            opt.step()
        deltas.append(opt.deltas()[layer.weight])
    (idx_a, plain), (idx_b, decayed) = deltas
    assert torch.equal(idx_a, idx_b)
    assert (decayed.abs() < plain.abs()).all()


def test_bf16_weights_keep_small_updates_in_an_fp32_master():
    layer = _layer().to(torch.bfloat16)
    opt = SiftAdamW([layer.weight], [5], lr=1e-5)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    for _ in range(3):
        layer(x).sum().backward()
        opt.step()
    _, delta = opt.deltas()[layer.weight]
    # Adam moves each value by ~lr per step: 3e-5 in total, far below bf16's resolution near 0.3.
    assert torch.allclose(delta.abs(), torch.full_like(delta, 3e-5), rtol=0.05)
