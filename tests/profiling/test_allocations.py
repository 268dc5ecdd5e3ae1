"""finetune.profiling.allocations: exact live bytes on CPU from the profiler's memory events,
and the replay of a CUDA allocator history to its peak (a recorded history's schema, built by
hand: no GPU here)."""
import pytest
import torch
from torch.profiler import record_function

from finetune.profiling.allocations import cuda_peak_sites, trace_allocations


def test_cpu_peaks_count_every_tensor_live_in_a_region():
    with trace_allocations() as traced:
        with record_function("first"):
            kept = torch.empty(1000, dtype=torch.float32)   # 4,000 bytes, kept
            brief = torch.empty(500, dtype=torch.float64)   # 4,000 bytes, freed in the region
            del brief
        with record_function("second"):
            later = torch.empty(2000, dtype=torch.int16)    # 4,000 bytes more
    trace = traced.trace
    assert trace.peaks("first") == [8000]
    assert trace.peaks("second") == [8000]
    (start, _), = trace.regions("second")
    assert trace.live_at(start) == 4000 and trace.live[-1] == 8000
    del kept, later


def _event(action, addr, size, *files):
    return {"action": action, "addr": addr, "size": size,
            "frames": [{"filename": f, "line": 7, "name": "fn"} for f in files]}


def test_cuda_history_replays_to_the_peak_and_names_the_sites():
    torch_file = "/x/site-packages/torch/nn/functional.py"
    layer = "/x/site-packages/sft/layer.py"
    trace = [
        _event("alloc", 1, 100, torch_file, layer),          # made by sft/layer.py
        _event("alloc", 2, 50, "/repo/finetune/profiling/measure.py"),
        _event("free_requested", 9, 30),                      # a block from before recording
        _event("alloc", 3, 200, torch_file),                  # torch alone: "torch internals"
        _event("free_requested", 3, 200),
        _event("free_completed", 3, 200),                     # does not change allocated bytes
        _event("alloc", 4, 10, layer),
    ]
    sites = cuda_peak_sites({"device_traces": [trace]}, baseline=1000)
    # 1000 - 30 + 100 + 50 + 200 = 1320 is the peak; the 10-byte block comes after it
    assert sites["peak_bytes"] == 1320
    assert sites["before_recording_bytes"] == 970
    assert sites["sites"] == [["torch internals", 200], ["sft/layer.py:7 fn", 100],
                              ["/repo/finetune/profiling/measure.py:7 fn", 50]]
    with pytest.raises(ValueError, match="lost its start"):
        cuda_peak_sites({"device_traces": [trace]}, baseline=1000, max_entries=len(trace))


def test_cuda_history_is_recorded_and_written_through_torchs_allocator_calls(tmp_path, monkeypatch):
    """No GPU here: torch's recording calls are stood in for, to run the code around them."""
    import pickle

    from finetune.profiling import allocations

    calls = []
    history = {"device_traces": [[_event("alloc", 1, 64, "/repo/sft/layer.py")]]}
    monkeypatch.setattr(torch.cuda.memory, "_record_memory_history",
                        lambda enabled="all", **kwargs: calls.append((enabled, kwargs)))
    monkeypatch.setattr(torch.cuda.memory, "_snapshot", lambda: history)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 512)
    assert allocations.record_cuda_history(max_entries=10) == 512
    assert allocations.stop_cuda_history(tmp_path / "h.pickle") == history
    assert calls == [("all", {"context": "alloc", "stacks": "python", "max_entries": 10}), (None, {})]
    assert pickle.loads((tmp_path / "h.pickle").read_bytes()) == history
    assert [p.name for p in tmp_path.iterdir()] == ["h.pickle"]
