"""One measurement: in process for the floor, in a fresh process for a built method."""
import json
from dataclasses import replace

import pytest

from conftest import TINY_PER_RANK
from finetune.profiling import runner
from finetune.profiling.measure import MeasureSpec, measure, parse_args, spec_to_argv
from finetune.profiling.memory_search import OK, OOM

SMALL = dict(batch_size=2, seq_len=16, steps=2, warmup_steps=1, threads=1, rank=4)


def test_floor_measures_steps_without_weight_gradients(tiny_model):
    record = measure(MeasureSpec(tiny_model, "original", **SMALL))
    assert record["status"] == OK
    assert record["trainable_params"] == 0
    assert len(record["step_times_s"]) == 2 and all(t > 0 for t in record["step_times_s"])
    assert record["mean_step_s"] == pytest.approx(sum(record["step_times_s"]) / 2)
    # ru_maxrss can trail psutil's current RSS by a few pages (Linux syncs its per-thread RSS
    # counters into the high-water mark lazily): seen 0.25 MB short after a larger test ran first.
    assert record["peak_rss_mb"] + 1 >= record["built_rss_mb"] > 0
    assert record["hook_times_s"] == [pytest.approx(0, abs=1e-3)] * 2  # the floor has no hooks
    assert record["step_phases"] == ["plain", "plain"]
    assert "cuda_max_allocated_gib" not in record  # CPU: peak RSS only


def test_sft_steps_are_labelled_by_what_the_selector_did(tiny_model):
    """The method's own schedule (gamma = 5, S = 20): SFT-AG estimates for 5 steps before each
    reselection; the first reselection is told apart from the steady-state one."""
    spec = MeasureSpec(tiny_model, "sft-ag", **{**SMALL, "steps": 26, "warmup_steps": 0})
    record = measure(spec)
    phases = record["step_phases"]
    assert phases == (["estimate"] * 4 + ["first-reselect"] + ["plain"] * 15
                      + ["estimate"] * 4 + ["reselect", "plain"])
    paths = record["sft_delta_grad_paths"]  # every tuned layer ran one kernel path
    assert set(paths) <= {"sddmm", "dense"} and sum(paths.values()) > 0


def test_lora_in_a_fresh_process_writes_a_well_formed_record(tiny_model, tmp_path):
    spec = MeasureSpec(tiny_model, "lora", activation_checkpointing=True, **SMALL)
    out = tmp_path / "lora.json"
    record = runner.profile(spec, out, cuda=False, model_name="tiny")
    on_disk = json.loads(out.read_text())
    assert on_disk == record
    assert record["status"] == OK, record.get("error")
    assert record["model"] == "tiny"
    assert record["spec"]["activation_checkpointing"] is True
    assert record["trainable_params"] == 4 * TINY_PER_RANK  # LoRA r=4 on all 7 projections
    assert record["method_config"]["r"] == 4
    assert len(record["step_times_s"]) == len(record["losses"]) == 2
    assert record["environment"]["pid"] != __import__("os").getpid()  # measured elsewhere
    assert record["peak_rss_mb"] > 100  # a process that imported torch


def test_crashed_measurement_becomes_a_failed_record(tmp_path):
    out = tmp_path / "bad.json"
    record = runner.run_fresh(MeasureSpec(str(tmp_path / "no-such-model"), "original", **SMALL), out)
    assert record["status"] == runner.FAILED
    assert "no-such-model" in record["error"]
    assert json.loads(out.read_text())["status"] == runner.FAILED


def test_cuda_path_runs_the_cap_search_with_one_process_per_probe(tmp_path, monkeypatch):
    """The wiring of profile() on CUDA, with a simulated device of 16 GiB where the run needs
    5.3 GiB: each probe is a run_fresh call with its cap, and the cap lands in the record."""
    calls = []

    def fake_run_fresh(spec, out, timeout_s=None):
        calls.append(spec.memory_cap_gib)
        if spec.memory_cap_gib is None:
            return {"status": OK, "spec": spec.__dict__, "cuda_total_gib": 16.0,
                    "cuda_max_allocated_gib": 5.1}
        return {"status": OK if spec.memory_cap_gib >= 5.3 else OOM}

    monkeypatch.setattr(runner, "run_fresh", fake_run_fresh)
    out = tmp_path / "r.json"
    record = runner.profile(MeasureSpec("m", "lora"), out, cuda=True, oom_retries=0)
    assert record["cuda_min_cap_gib"] == 6
    assert calls[0] is None and calls[1] == 16 and 6 in calls and 5 in calls
    assert json.loads(out.read_text())["cuda_min_cap"]["cap_gib"] == 6


def test_cuda_probe_that_crashes_without_oom_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_fresh", lambda spec, out, timeout_s=None:
                        {"status": runner.FAILED, "error": "segfault"})
    with pytest.raises(RuntimeError, match="without an OOM: segfault"):
        runner.cuda_fits(MeasureSpec("m", "lora"), tmp_path)(4.0)


def test_command_line_round_trip(tmp_path):
    spec = MeasureSpec("m", "sft-ag", rank=8, batch_size=3, seq_len=64, steps=5, warmup_steps=0,
                       activation_checkpointing=True, model_size="135m", threads=2,
                       memory_cap_gib=3.0, cuda_memory_history="h.pickle", seed=1)
    back, out = parse_args(spec_to_argv(spec, tmp_path / "x.json"))
    assert back == spec and out == tmp_path / "x.json"
    plain = replace(spec, activation_checkpointing=False, model_size=None, threads=None,
                    memory_cap_gib=None, cuda_memory_history=None)
    assert parse_args(spec_to_argv(plain, tmp_path / "y.json"))[0] == plain


def test_invalid_specs_name_the_field():
    with pytest.raises(ValueError, match="MeasureSpec.steps"):
        MeasureSpec("m", "lora", steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        MeasureSpec("m", "lora", warmup_steps=-1)


def test_memory_cap_needs_cuda(tiny_model):
    with pytest.raises(ValueError, match="needs CUDA"):
        measure(MeasureSpec(tiny_model, "original", memory_cap_gib=1.0, **SMALL))


def test_allocation_history_needs_cuda_and_says_what_does_it_on_cpu(monkeypatch):
    import finetune.profiling.measure as measure_module

    monkeypatch.setattr(measure_module, "_build", lambda *a: pytest.fail("built before checking"))
    with pytest.raises(ValueError, match="needs CUDA .*trace_allocations"):
        measure(MeasureSpec("no-model-needed", "original", cuda_memory_history="h.pickle", **SMALL))
