"""Data parallel: 2 gloo processes on CPU select identically, and equal one process that sees
the global batch (candidate statistics are all-reduced, values' gradients averaged by DDP)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from conftest import tiny_llama, token_batch
from sft import SftAdamW, SftConfig, SftSelector, SftSM3, get_sft_model

STEPS, TOTAL = 6, 10  # reselections after steps 2 (all) and 6 (partial)


def _run(selection: str, rank: int | None, world: int) -> dict:
    torch.set_num_threads(1)
    model = get_sft_model(tiny_llama(), SftConfig(density=0.05, selection=selection,
                                                  reselection_steps=4, accumulation_steps=2))
    opt_cls = SftAdamW if selection == "ag" else SftSM3
    opt = opt_cls(model.trainable_parameters_groups, lr=1e-2)
    selector = SftSelector(model, opt, TOTAL)
    runner = DistributedDataParallel(model) if rank is not None else model
    if rank is not None:  # the index sets agree by construction: DDP broadcasts none of them
        synced = {id(b) for b in runner.modules_buffers}
        assert not [n for n, b in model.named_buffers() if id(b) in synced
                    and n.rsplit(".", 1)[-1] in ("indices", "grown_at")]
    for step in range(STEPS):
        ids = token_batch(step, batch=4)
        if rank is not None:
            ids = ids.chunk(world)[rank]
        runner(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        selector.step()
    assert selector.num_reselections == 2
    return {name: (layer.indices.clone(), layer.values.detach().clone(), layer.grown_at.clone())
            for name, layer in model.sft_layers()}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = {sel: _run(sel, rank, world) for sel in ("ag", "ma")}
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_select_identically_and_equal_single_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for selection in ("ag", "ma"):
        single = _run(selection, None, 1)
        for name, (indices, values, grown_at) in single.items():
            for result in ranks:
                r_indices, r_values, r_grown = result[selection][name]
                assert torch.equal(r_indices, ranks[0][selection][name][0])  # ranks agree exactly
                assert torch.equal(r_values, ranks[0][selection][name][1])
                assert torch.equal(r_indices, indices), (selection, name)
                assert torch.equal(r_grown, grown_at)
                torch.testing.assert_close(r_values, values, rtol=1e-4, atol=1e-6)
