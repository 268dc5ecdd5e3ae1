"""A JSONL input's bad line fails naming its file and line: bytes that are not UTF-8, and lone
surrogates, which would otherwise fail later, in a tokenizer or a UTF-8 writer, with no line."""
import json
import re

import pytest

from artifacts.jsonl import read_jsonl

GOOD = b'{"prompt": "a", "response": "b"}\n'


@pytest.mark.parametrize("bad, where", [
    (b'{"prompt": "caf\xe9", "response": "b"}\n', "not UTF-8"),          # Latin-1
    (b'{"prompt": "a", "response": "\xed\xa0\x80"}\n', "not UTF-8"),     # a UTF-8-encoded surrogate
    (b'{"prompt": "a\xff"}\n', "not UTF-8"),
    (b'{"prompt": "\\ud800", "response": "b"}\n', "lone surrogate in prompt"),
    (b'{"prompt": "a", "response": "x\\udc00y"}\n', "lone surrogate in response"),
    (b'{"prompt": "a", "meta": {"tags": ["ok", "\\udfff"]}}\n', "lone surrogate in meta.tags[1]"),
    (b'{"\\ud800": "a"}\n', "lone surrogate in the key"),
    (b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b'}\n', "not readable JSON (nested too deeply)"),
    (b'{"prompt": "a", "n": ' + b"7" * 5000 + b'}\n', "not readable JSON (Exceeds the limit"),
])
def test_a_bad_line_names_file_and_line(tmp_path, bad, where):
    path = tmp_path / "data.jsonl"
    path.write_bytes(GOOD + b"\n" + bad + GOOD)
    with pytest.raises(ValueError, match=re.escape(f"data.jsonl:3: {where}")):
        read_jsonl(path)


def test_a_bad_line_of_a_mixture_names_file_and_line(tmp_path):
    from finetune.mixtures.io import read_rows

    def row(user: bytes, assistant: bytes) -> bytes:
        return (b'{"messages": [{"role": "user", "content": "' + user + b'"}, '
                b'{"role": "assistant", "content": "' + assistant + b'"}]}\n')

    path = tmp_path / "mix.jsonl"
    path.write_bytes(row(b"q", b"a") + row(b"q", b"\\ud83d"))
    with pytest.raises(ValueError, match=r"mix\.jsonl:2: lone surrogate in messages\[1\]\.content"):
        read_rows(path)
    path.write_bytes(row(b"q", b"a") * 2 + row(b"\x80", b"a"))
    with pytest.raises(ValueError, match=r"mix\.jsonl:3: not UTF-8"):
        read_rows(path)


def test_valid_unicode_reads_as_before(tmp_path):
    rows = [{"prompt": "caf\u00e9 \U0001F600", "response": "\u4e2d\u6587"},
            {"prompt": "escaped pair", "response": "\\ud83d\\ude00 literal backslashes"}]
    path = tmp_path / "ok.jsonl"
    # One line as raw UTF-8, one with \u escapes (a surrogate pair is one valid character).
    path.write_bytes(json.dumps(rows[0], ensure_ascii=False).encode() + b"\n"
                     + json.dumps(rows[1]).encode() + b"\n"
                     + b'{"prompt": "\\ud83d\\ude00", "response": "b"}\n')
    got = read_jsonl(path)
    assert got[:2] == rows and got[2]["prompt"] == "\U0001F600"
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD)
    assert read_jsonl(bom) == [{"prompt": "a", "response": "b"}]
