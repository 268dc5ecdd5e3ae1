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


def test_shipped_bigbench_keeps_bbh_sources_whole_and_samples_the_rest():
    """The subset PyPI's vanished sdist was replaced by: whole where BBH rebuilds items, a sample
    of `per_task` examples elsewhere; a sampled task is refused where whole ones are needed."""
    from artifacts import bigbench

    meta, tasks = bigbench.provenance(), bigbench.tasks()
    assert len(meta["sdist_sha256"]) == 64 and len(tasks) > 900
    assert len(bigbench.whole_task_examples("reasoning_about_colored_objects")) == 2000
    assert max(len(t["examples"]) for p, t in tasks.items() if p not in meta["whole"]) == meta["per_task"]
    with pytest.raises(KeyError, match="'anachronisms' is not kept whole"):
        bigbench.whole_task_examples("anachronisms")


def _sdist(path: Path, files: dict[str, bytes]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_make_subset_keeps_whole_tasks_and_a_stable_sample(tmp_path):
    import json

    from artifacts.bigbench.make_subset import main

    def task(n):
        return json.dumps({"task_prefix": "p", "examples": [{"input": str(i), "target": "t"} for i in range(n)]}).encode()

    sdist = _sdist(tmp_path / "bb.tar.gz", {"a": task(30), "b/sub": task(30), "big": task(500)})
    main([str(sdist), "--whole", "a", "--per-task", "4", "--max-task-bytes", "3000", "--out", str(tmp_path / "s.json.gz")])
    first = (tmp_path / "s.json.gz").read_bytes()
    import gzip
    subset = json.loads(gzip.decompress(first))
    assert set(subset["tasks"]) == {"a", "b/sub"}  # "big" is over the byte cap
    assert len(subset["tasks"]["a"]["examples"]) == 30 and subset["tasks"]["a"]["task_prefix"] == "p"
    sample = [int(e["input"]) for e in subset["tasks"]["b/sub"]["examples"]]
    assert len(sample) == 4 and sample == sorted(sample)
    main([str(sdist), "--whole", "a", "--per-task", "4", "--max-task-bytes", "3000", "--out", str(tmp_path / "s.json.gz")])
    assert (tmp_path / "s.json.gz").read_bytes() == first

    bad = _sdist(tmp_path / "bad.tar.gz", {"a": task(3), "broken": b'{"examples": ['})
    with pytest.raises(ValueError, match="broken/task.json:1: not valid JSON"):
        main([str(bad), "--whole", "a", "--out", str(tmp_path / "t.json.gz")])
    with pytest.raises(ValueError, match=r"no task.json for whole task\(s\) \['zzz'\]"):
        main([str(sdist), "--whole", "zzz", "--out", str(tmp_path / "t.json.gz")])
    assert not (tmp_path / "t.json.gz").exists()
