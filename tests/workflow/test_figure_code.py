"""A figure follows its drawing code: the code's source files are inputs of the figure's rule
(study.code_files), so editing them reruns that figure, and only that figure."""
import os
import subprocess
import sys
from pathlib import Path

from study.code_files import source_files

ROOT = Path(__file__).resolve().parents[2]


def test_source_files_are_found_without_importing_the_module():
    code = ("import sys; from study.code_files import source_files; "
            "print(source_files('analysis.figures', 'analysis.cost_model')); "
            "assert 'analysis.figures' not in sys.modules and 'matplotlib' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    files = eval(out.stdout)  # noqa: S307  the list printed just above
    assert files[0] == str(ROOT / "analysis" / "figures.py")
    assert str(ROOT / "analysis" / "cost_model" / "__init__.py") in files[1:]  # a package: all its files
    assert all(f.endswith(".py") for f in files)


def test_a_missing_module_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="no module 'analysis.figurez'"):
        source_files("analysis.figurez")


def dry_run(results: Path, target: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile=config/smoke.yaml",
                           "--config", f"results_dir={results}", "--", str(results / target)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_editing_the_drawing_code_reruns_only_the_figure(tmp_path):
    """The smoke config has no SpIEL run, so Figure 3's only inputs are its code: a figure
    older than its code (analysis/figures.py, study/collect.py) is redrawn, a newer one is up
    to date."""
    figure = tmp_path / "figure3.png"
    figure.write_bytes(b"old picture")
    code_time = max(Path(f).stat().st_mtime for f in source_files("analysis.figures", "study.collect"))
    os.utime(figure, (code_time - 60, code_time - 60))  # as if its code was edited since
    stale = dry_run(tmp_path, "figure3.png")
    jobs = [line for line in stale.splitlines() if line.startswith("rule ")]
    assert jobs == ["rule figure3:"] and "updated input files" in stale, stale
    os.utime(figure, (code_time + 60, code_time + 60))
    assert "Nothing to be done" in dry_run(tmp_path, "figure3.png")
