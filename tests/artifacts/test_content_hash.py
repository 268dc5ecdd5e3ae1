"""A file's content hash is computed once and reused while the file is unchanged; any rewrite
(same size, even with its mtime put back) is hashed again."""
import hashlib
import os

import pytest

from artifacts import content_hash
from artifacts.content_hash import cached_sha256

OLD_NS = 1_600_000_000 * 10**9  # a mtime well in the past: the entry is cached


def _write(path, data: bytes):
    path.write_bytes(data)
    os.utime(path, ns=(OLD_NS, OLD_NS))


def test_an_unchanged_file_is_hashed_once(tmp_path, monkeypatch):
    path, cache = tmp_path / "weights.bin", tmp_path / "cache"
    _write(path, b"a" * 1000)
    assert cached_sha256(path, cache) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert len(list(cache.iterdir())) == 1
    monkeypatch.setattr(content_hash, "sha256_of", lambda p: pytest.fail("hashed again"))
    assert cached_sha256(path, cache) == hashlib.sha256(b"a" * 1000).hexdigest()


def test_a_rewrite_in_place_with_the_same_size_and_mtime_is_hashed_again(tmp_path):
    path, cache = tmp_path / "weights.bin", tmp_path / "cache"
    _write(path, b"a" * 1000)
    first = cached_sha256(path, cache)
    with open(path, "r+b") as fh:  # same inode, same size
        fh.write(b"b")
    os.utime(path, ns=(OLD_NS, OLD_NS))  # mtime put back (cp -p, rsync -t)
    assert cached_sha256(path, cache) == hashlib.sha256(b"b" + b"a" * 999).hexdigest() != first


def test_a_freshly_written_file_is_not_cached(tmp_path):
    """Written within the timestamp tick of its hash: a second write could keep every stamp."""
    path, cache = tmp_path / "data.jsonl", tmp_path / "cache"
    path.write_bytes(b"x")
    cached_sha256(path, cache)
    assert not cache.exists()
