"""Mixture files: atomic JSONL + manifest, clear errors, and never training on evaluation data."""
import json

import pytest

from artifacts.packaged import default_cache_dir
from finetune.mixtures import build_mixture, manifest_path, read_rows
from finetune.mixtures.decontaminate import NGRAM, OverlapIndex, decontaminate, excluded_name, words
from finetune.mixtures.io import row_text


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pair(row):
    """(first user message, last assistant message) of a one-turn row."""
    user = next(m["content"] for m in row["messages"] if m["role"] == "user")
    return user, [m["content"] for m in row["messages"] if m["role"] == "assistant"][-1]


def turn(prompt, response, source="s"):
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": response}], "source": source}


def test_path_source_writes_rows_and_manifest(tmp_path):
    src = _write(tmp_path / "raw.jsonl", [
        {"instruction": "Add.", "input": "2 and 3", "output": "5"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
         "dataset": "chat"},
        {"prompt": "P", "response": "R", "source": "mine"},
    ])
    out = tmp_path / "mix" / "m.jsonl"
    manifest = build_mixture("m", {"source": "path", "path": str(src), "decontaminate": False},
                             tmp_path, out)
    rows = read_rows(out)
    from finetune.mixtures.alpaca import WITH_INPUT

    alpaca_prompts = {t.format(instruction="Add.", input="2 and 3") for t, _, _ in WITH_INPUT}
    by_source = {r["source"]: pair(r) for r in rows}
    assert by_source["raw/chat"] == ("Hi", "Hello") and by_source["mine"] == ("P", "R")
    assert by_source["raw"][0] in alpaca_prompts and by_source["raw"][1] == "5"
    assert manifest["n_rows"] == 3 and sum(manifest["counts"].values()) == 3
    assert json.loads(manifest_path(out).read_text()) == manifest
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_seed_fixes_order_and_cap(tmp_path):
    src = _write(tmp_path / "raw.jsonl", [{"prompt": f"p{i}", "response": "r"} for i in range(50)])
    spec = {"source": "path", "path": str(src), "decontaminate": False, "max_examples": 10, "seed": 3}
    a = build_mixture("a", spec, tmp_path, tmp_path / "a.jsonl")
    b = build_mixture("b", spec, tmp_path, tmp_path / "b.jsonl")
    c = build_mixture("c", {**spec, "seed": 4}, tmp_path, tmp_path / "c.jsonl")
    assert a["sha256"] == b["sha256"] != c["sha256"] and a["n_rows"] == 10


def test_malformed_input_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(turn("a", "b")) + '\n{not json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        read_rows(bad)
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        build_mixture("x", {"source": "path", "path": str(bad)}, tmp_path, tmp_path / "x.jsonl")
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}\n')
    with pytest.raises(ValueError, match=r"missing\.jsonl:1: messages\[1\] must be \{role: one of"):
        read_rows(missing)


def test_empty_mixture_is_an_error(tmp_path):
    empty = _write(tmp_path / "empty.jsonl", [{"prompt": "a", "response": "  "}])
    with pytest.raises(ValueError, match="empty"):
        build_mixture("e", {"source": "path", "path": str(empty), "decontaminate": False},
                      tmp_path, tmp_path / "e.jsonl")
    assert not (tmp_path / "e.jsonl").exists()
    (tmp_path / "blank.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_rows(tmp_path / "blank.jsonl")


def test_unknown_spec_keys_and_sources_fail(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        build_mixture("m", {"source": "flan-packaged", "max_exemples": 3}, tmp_path, tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="'source' must be one of"):
        build_mixture("m", {"source": "alpaca"}, tmp_path, tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="unknown component 'nope'"):
        build_mixture("m", {"source": "mix", "components": ["nope"]}, tmp_path, tmp_path / "m.jsonl")


def test_excluded_by_task_name():
    for name in ["bigbench-packaged/causal_judgment", "bigbench-packaged/logical_deduction/five_objects",
                 "bigbench-packaged/tracking_shuffled_objects/three_objects", "hub/gsm8k_train",
                 "flan_v2/mmlu_dev", "openai_humaneval", "tydiqa_goldp", "bbh_date"]:
        assert excluded_name(name), name
    for name in ["bigbench-packaged/anachronisms", "flan-packaged/boolq", "bigbench-packaged/arithmetic/2_digit_addition"]:
        assert not excluded_name(name), name


def test_overlap_index_catches_long_and_short_items():
    long_item = "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins"
    index = OverlapIndex({"gsm8k": [long_item], "mmlu": ["Which planet is the largest one?"]})
    assert len(words(long_item)) > NGRAM
    rows = [turn("Solve: " + long_item.upper() + " ...", "x", "a"),
            turn("Quiz. Which planet is the largest one? Think.", "Jupiter", "b"),
            turn("Janet's ducks lay eggs.", "ok", "c"),
            turn("hello", "hi", "bigbench-packaged/navigate")]
    kept, dropped = decontaminate(rows, index)
    assert [r["source"] for r in kept] == ["c"]
    assert dropped == {"gsm8k": 1, "mmlu": 1, "by-name": 1}


@pytest.fixture(scope="module")
def packaged_flan(tmp_path_factory):
    out = tmp_path_factory.mktemp("flan") / "flan.jsonl"
    spec = {"source": "flan-packaged", "tasks": ["openbookqa", "truthfulqa", "asdiv"], "seed": 0}
    return build_mixture("flan", spec, default_cache_dir(), out), out


def test_packaged_flan_mixture_is_templated_and_clean(packaged_flan):
    from finetune.mixtures.decontaminate import eval_items

    manifest, out = packaged_flan
    rows = read_rows(out)
    assert set(manifest["counts"]) == {"flan-packaged/openbookqa", "flan-packaged/truthfulqa", "flan-packaged/asdiv"}
    assert len({pair(r)[0].split("\n")[0][:12] for r in rows if r["source"].endswith("openbookqa")}) > 1
    index = OverlapIndex(eval_items(default_cache_dir()))
    assert not [r for r in rows if index.match(row_text(r))]
    # a few conversations are multi-turn, some opening with a system message (finetune.chat
    # trains on every turn), so the embedded default runs that path too
    multi = [r for r in rows if sum(m["role"] == "assistant" for m in r["messages"]) == 2]
    assert multi and manifest["conversations"]["multi_turn"] == len(multi) < len(rows) // 10
    assert 0 < manifest["conversations"]["with_system"] <= len(multi)


def test_injected_eval_items_are_dropped(tmp_path):
    from finetune.mixtures.decontaminate import eval_items

    items = eval_items(default_cache_dir())
    rows = [{"prompt": items["gsm8k"][5], "response": "42"},
            {"prompt": "Complete:\n" + items["humaneval"][3], "response": "pass"},
            {"prompt": items["mmlu"][100], "response": "A"},
            {"prompt": "An unrelated question about cooking pasta?", "response": "Boil water."}]
    src = _write(tmp_path / "leaky.jsonl", rows)
    manifest = build_mixture("leaky", {"source": "path", "path": str(src)}, default_cache_dir(),
                             tmp_path / "clean.jsonl")
    assert [pair(r)[1] for r in read_rows(tmp_path / "clean.jsonl")] == ["Boil water."]
    assert manifest["dropped_overlapping_evals"] == {"gsm8k": 1, "humaneval": 1, "mmlu": 1}


def test_mix_takes_weighted_shares_of_named_components(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"prompt": f"a{i}", "response": "r", "source": "a"} for i in range(40)])
    b = _write(tmp_path / "b.jsonl", [{"prompt": f"b{i}", "response": "r", "source": "b"} for i in range(40)])
    catalogue = {"first": {"source": "path", "path": str(a), "decontaminate": False},
                 "second": {"source": "path", "path": str(b), "decontaminate": False}}
    spec = {"source": "mix", "components": ["first", "second"], "weights": [3, 1], "max_examples": 20}
    manifest = build_mixture("mix", spec, tmp_path, tmp_path / "mix.jsonl", catalogue=catalogue)
    assert manifest["counts"] == {"a": 15, "b": 5}
    assert len({pair(r)[0] for r in read_rows(tmp_path / "mix.jsonl")}) == 20


def test_bigbench_rendering_and_refusal_of_bbh_sources(tmp_path):
    from finetune.mixtures.bigbench import render_example

    task = {"task_prefix": "Pick the odd one out."}
    assert render_example(task, {"input": "cat, dog, car", "target_scores": {"cat": 0, "car": 1}}) == (
        "Pick the odd one out.\n\ncat, dog, car\nOptions:\n- cat\n- car", "car")
    assert render_example({}, {"input": "2+2=", "target": ["4", "four"]}) == ("2+2=", "4")
    assert render_example({}, {"input": "x", "target": ""}) is None
    with pytest.raises(ValueError, match="BBH source"):
        build_mixture("b", {"source": "bigbench-packaged", "tasks": ["anachronisms", "snarks"]},
                      tmp_path, tmp_path / "b.jsonl")
