"""The top README's library example runs as written, and README keeps its two commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_library_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it saves "my-sft"
    section = README.split("## Use the library on your own model")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "my-sft" / "sft_model.safetensors").exists()


def test_two_commands_and_ci_agree():
    main, tests = re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)[:2]
    assert main.endswith("snakemake --cores all results/table1.csv")
    assert tests.endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    install = tests.rsplit(" && ", 1)[0].replace("pip install", "pip install -q")
    assert install in ci
