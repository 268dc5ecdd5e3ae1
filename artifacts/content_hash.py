"""A file's sha256, computed once: a run is keyed by the content of what it trains on, and a
7b model's weights are tens of GB, too many to hash at every job start.

The digest is cached under `<cache>/sha256/` (`artifacts.packaged.default_cache_dir`), one small
JSON per file, keyed by what a rewrite changes: the path, size, mtime, ctime and inode (a file
rewritten in place with the same size and its mtime restored still gets a new ctime; one
replaced by a rename gets a new inode). Like git's index, an entry is only kept when the file's
mtime is a few seconds old, so a write within the file system's timestamp tick of the hash is
never trusted. Hand-written: hashlib has the digest, nothing in the stack caches it by stat.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from artifacts.atomic import write_json
from artifacts.packaged import default_cache_dir, sha256_of

# A file modified less than this long before it was hashed may change again within the same
# timestamp tick (coarse file-system clocks): its digest is returned but not cached.
RACY_S = 2.0


def _stamp(path: Path) -> dict:
    st = os.stat(path)
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _entry_path(path: Path, cache_dir: Path | None) -> Path:
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "sha256"
    return folder / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"


def cached_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """The sha256 of `path`'s content, from the cache when the file is unchanged since."""
    path = Path(path).resolve()
    stamp = _stamp(path)
    entry = _entry_path(path, cache_dir)
    try:
        cached = json.loads(entry.read_text())
        if cached.get("stamp") == stamp and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = sha256_of(path)
    if _stamp(path) == stamp and time.time_ns() - stamp["mtime_ns"] > RACY_S * 1e9:
        try:
            write_json(entry, {"stamp": stamp, "sha256": digest})
        except OSError:  # a read-only cache only costs the next job a re-hash
            pass
    return digest
