"""The README's example runs as written (its python blocks, in order, in one namespace; the
```py block needs the Hub and is only shown)."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "sft" / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "my-sft" / "sft_model.safetensors").is_file()
    assert "trainable params:" in capsys.readouterr().out
    checkpoint = {p.name for p in (tmp_path / "trainer-out" / "checkpoint-3").iterdir()}
    assert {"sft_model.safetensors", "sft_selector.safetensors", "optimizer.pt"} <= checkpoint
    assert "model.safetensors" not in checkpoint
    assert namespace["trainer"].state.global_step == 6  # the resumed run finished
    assert (tmp_path / "tiny-sft" / "sft_config.json").is_file()
    assert (tmp_path / "tiny-merged" / "model.safetensors").is_file()
