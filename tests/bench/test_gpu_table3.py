"""bench.gpu_table3 end to end on CPU: the same code the GPU check runs, on a tiny config."""
import json
import os

import pytest

from bench import gpu_table3

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "_comment": "keys starting with _ are dropped"}


def test_tiny_config_on_cpu_writes_records_beside_predictions(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    rows = gpu_table3.main(["--device", "cpu", "--config", str(config), "--out", str(out),
                            "--cells", "original", "sft-ma", "lora:ckpt", "--rank", "4",
                            "--seq-len", "16", "--batch-size", "2", "--steps", "2",
                            "--warmup-steps", "1", "--threads", "1", "--model-size", ""])
    assert rows == 0
    lines = [json.loads(line) for line in (out / "table3.jsonl").read_text().splitlines()]
    run, cells = lines[0], lines[1:]
    assert run["kind"] == "run" and run["model"]["dtype"] == "float32" and run["profile"] == "cpu"
    assert run["model"]["params"] == 2 * 256 * 64 + 2 * (4 * 64 * 64 // 1 - 2 * 64 * 32 + 3 * 64 * 128) + 64 * 5
    assert [c["cell"] for c in cells] == ["original", "sft-ma", "lora:ckpt"]
    assert all(c["status"] == "ok" and len(c["step_times_s"]) == 2 for c in cells), cells
    assert cells[2]["spec"]["activation_checkpointing"] and cells[1]["spec"]["rank"] == 4
    assert cells[1]["trainable_params"] == 4 * 2 * ((64 + 64) * 2 + 2 * (64 + 32) + 3 * (64 + 128))
    # each cell in its own process, and the prediction beside it
    assert len({c["environment"]["pid"] for c in cells}) == 3
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"  # hidden from the cells only
    assert cells[1]["predicted"]["delta_grad"] in ("dense", "sddmm") and cells[1]["predicted"]["peak_gib"] > 0
    assert cells[0]["predicted"]["plain_vs_floor"] == pytest.approx(1.0)
    table = (out / "table3.md").read_text()
    assert table.count("\n| ") == 3 + 1 and "| sft-ma | ok |" in table and "peak RSS GiB" in table
    # a second run reuses the saved model and a budget of 0 skips every cell, saying so
    gpu_table3.main(["--device", "cpu", "--config", str(config), "--out", str(out), "--cells", "lora",
                     "--budget-s", "-1", "--model-size", ""])
    skipped = [json.loads(line) for line in (out / "table3.jsonl").read_text().splitlines()]
    assert skipped[0]["model"] is None and skipped[1]["status"] == "skipped"
    assert "budget" in skipped[1]["error"]


def test_bad_cells_and_configs_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_table3.parse_args(["--out", str(tmp_path), "--cells", "lora:fast"])
    assert "cell 'lora:fast'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  \"model_type\": ")
    with pytest.raises(SystemExit):
        gpu_table3.parse_args(["--out", str(tmp_path), "--config", str(bad)])
    assert "bad.json:2: invalid JSON" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a packaged config"):
        gpu_table3.config_dict("no-such-model")
    # the packaged 7b config is what the GPU check builds by default
    assert gpu_table3.config_dict(gpu_table3.parse_args(["--out", str(tmp_path)]).config)[0]["hidden_size"] == 4096


def test_plain_steps_and_reselections_come_from_the_phases():
    record = {"step_times_s": [1.0, 5.0, 2.0, 9.0, 3.0], "hook_times_s": [0, 0, 0, 4.0, 0.5],
              "step_phases": ["plain", "estimate", "plain", "first-reselect", "reselect"]}
    assert gpu_table3.plain_median_s(record) == 1.5  # plain steps only: 1 and 2
    assert gpu_table3.reselection_s(record) == [0.5]


def test_the_table_lists_what_was_live_at_a_cells_peak():
    gib = 2**30
    row = {"cell": "sft-ag:ckpt", "method": "sft-ag", "ckpt": True, "status": "ok",
           "cuda_peak_sites": {"peak_bytes": 18 * gib, "before_recording_bytes": 16 * gib,
                               "sites": [["sft/layer.py:120 backward", gib // 2]]}}
    text = gpu_table3.markdown([row], "llama-2-7b", "h200", "compact", "cuda")
    assert ("sft-ag:ckpt: live at the peak (18.00 GiB), 16.00 GiB from before the first step, "
            "then by site:\n- 0.500 GiB sft/layer.py:120 backward") in text
