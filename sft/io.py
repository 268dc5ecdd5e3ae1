"""Atomic file writes: a crash mid-write never leaves half a file under the final name.

Files get the permissions of any newly created file (0o666 less the umask, 0644 usually), not
the 0600 of ``tempfile.mkstemp``: saved SFTs are meant to be read by collaborators.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from torch import Tensor


def _new_temporary(path: Path) -> Path:
    """An empty file beside ``path`` created with mode 0o666 & ~umask, under a fresh name."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then ``os.replace`` it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    mode = tmp.stat().st_mode & 0o777  # 0o666 & ~umask
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # a writer may have replaced the file (safetensors does, 0600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_save_safetensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    """``(metadata, tensors)`` of a safetensors file; a damaged (e.g. truncated) file raises
    ``ValueError`` naming it, where safetensors' own error does not."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err}); it may be truncated "
                         "or damaged") from err
    return metadata, tensors
