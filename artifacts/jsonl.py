"""Reading JSONL inputs (mixtures, benchmark files, records) so that a bad line names its file
and line: malformed JSON, bytes that are not UTF-8, and lone surrogates (a `\\ud800` escape
decodes to a string no tokenizer or UTF-8 writer accepts, so it would fail far from its line)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(obj, where: str = "") -> str | None:
    """The JSON path of the first string (value or key) holding a lone surrogate, else None."""
    if isinstance(obj, str):
        match = _SURROGATE.search(obj)
        return f"{where or 'the value'} (U+{ord(match.group()):04X} at character {match.start()})" if match else None
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _lone_surrogate(key, f"the key {key!r}") or _lone_surrogate(value, f"{where}.{key}".lstrip("."))
            if found:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _lone_surrogate(value, f"{where}[{i}]")
            if found:
                return found
    return None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-empty line; a malformed line raises ValueError naming
    the file and line: not UTF-8, not valid JSON (or nested too deeply, or an integer too long
    to convert), not an object, or a string with a lone surrogate. A UTF-8 byte-order mark before the first line is skipped."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                column = err.start + len(raw) - len(err.object) + 1  # past a byte-order mark
                raise ValueError(f"{path}:{lineno}: not UTF-8 (byte 0x{err.object[err.start]:02x} at byte "
                                 f"{column} of the line: {err.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            except RecursionError:
                raise ValueError(f"{path}:{lineno}: not readable JSON (nested too deeply)") from None
            except ValueError as err:  # an integer past Python's 4300-digit conversion limit
                raise ValueError(f"{path}:{lineno}: not readable JSON ({err})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            # UTF-8 cannot carry a surrogate, so only a \u escape can make one.
            if "\\u" in line and (where := _lone_surrogate(obj)):
                raise ValueError(f"{path}:{lineno}: lone surrogate in {where}: not valid Unicode "
                                 "(an unpaired \\uD800-\\uDFFF escape)")
            yield lineno, obj


def read_jsonl(path: Path) -> list[dict]:
    """Every object of a JSONL file; a bad line raises naming file and line."""
    return [row for _, row in iter_jsonl(path)]
