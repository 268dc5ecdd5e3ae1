"""Packaged artifacts: one download, atomic, and safe when two DAG jobs race for it."""
import threading
import zipfile
from pathlib import Path

import pytest

from artifacts import packaged


def fake_download(delay=0.0):
    def download(spec, dest: Path) -> Path:
        import time
        time.sleep(delay)
        wheel = dest / f"{spec.name.replace('-', '_')}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("pkg/data/file.txt", "payload")
        return wheel
    return download


def test_fetch_extracts_one_member_and_checks_sha(tmp_path, monkeypatch):
    monkeypatch.setattr(packaged, "_download", fake_download())
    spec = packaged.PackagedFile("demo-pkg==1.0", "pkg/data/file.txt")
    path = packaged.fetch(spec, tmp_path)
    assert path.read_text() == "payload"
    good = packaged.sha256_of(path)
    assert packaged.fetch(packaged.PackagedFile("demo-pkg==1.0", "pkg/data/file.txt", good), tmp_path) == path
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        packaged.fetch(packaged.PackagedFile("demo-pkg==1.0", "pkg/data/file.txt", "0" * 64), tmp_path)
    with pytest.raises(RuntimeError, match="has no member"):
        packaged.fetch(packaged.PackagedFile("demo-pkg==1.0", "pkg/missing.txt"), tmp_path)


def test_concurrent_fetch_archive_both_succeed(tmp_path, monkeypatch):
    monkeypatch.setattr(packaged, "_download", fake_download(delay=0.2))
    results, errors = [], []

    def worker():
        try:
            results.append(packaged.fetch_archive("demo-pkg==1.0", tmp_path))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert zipfile.ZipFile(results[0]).read("pkg/data/file.txt") == b"payload"
    leftovers = [p for p in results[0].parent.parent.iterdir() if p.name != "_dist"]
    assert leftovers == []
