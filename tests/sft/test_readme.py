"""The README's example runs as written (its python blocks, in order, in one namespace)."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "sft" / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "my-sft" / "sft_model.safetensors").is_file()
    assert namespace["trainer"].state.global_step == 6
    assert "trainable params:" in capsys.readouterr().out
