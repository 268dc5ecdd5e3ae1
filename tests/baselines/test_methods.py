"""Every registered method trains a few steps through the shared loop and loads for evaluation."""
import pytest
import torch

from baselines import available_methods, resolve_method
from baselines.eval_model import load_for_eval
from finetune.train import read_method, train

CFG = {"max_steps": 2, "batch_size": 2, "grad_accum": 2, "max_length": 64, "logging_steps": 100,
       "save_steps": 100}
EXPECTED = {"full", "lora", "ia3", "sft-ag", "sft-ma", "sift", "qlora", "qsft-ag", "qsft-ma", "dora", "shira"}
UNTUNED = {"original", "original-4bit"}


def test_the_eleven_methods_and_two_untuned_models_have_files():
    assert set(available_methods()) == EXPECTED | UNTUNED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_method_trains_and_changes_the_model(name, tiny_model_dir, mixture_path, tmp_path):
    method = resolve_method(name)
    summary = train(tiny_model_dir, mixture_path, method, CFG, tmp_path / name, seed=0)
    assert summary["steps"] == 2 and summary["trainable_params"] > 0
    assert (tmp_path / name / "artifact").is_dir()
    tuned, tok = load_for_eval(tiny_model_dir, tmp_path / name, read_method(tmp_path / name))
    untuned = "original-4bit" if method.get("quantize") else "original"
    original, _ = load_for_eval(tiny_model_dir, None, resolve_method(untuned))
    ids = tok("<|user|>\nWhat is 3 plus 3?\n<|assistant|>\n", return_tensors="pt").input_ids
    with torch.no_grad():
        assert not torch.equal(tuned(ids).logits, original(ids).logits)


def test_budgets_are_matched_to_lora_rank(tiny_model_dir, mixture_path, tmp_path):
    counts = {}
    for name in ("lora", "sft-ag", "sft-ma", "sift", "shira"):
        counts[name] = train(tiny_model_dir, mixture_path, resolve_method(name, {"r": 4}),
                             {**CFG, "max_steps": 1}, tmp_path / name)["trainable_params"]
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("name, extra, expected", [
    ("sft-ag", {}, "SftAdamW"),
    ("sft-ma", {"sm3_momentum": 0.5}, "SftSM3"),
])
def test_the_sft_builder_takes_the_librarys_optimizer_for_its_selection(name, extra, expected,
                                                                        tiny_model_dir):
    """The selection -> optimizer pairing is sft.SftConfig.optimizer_class's; the harness adds
    only its own settings (SM3's momentum and beta from the method file)."""
    import sft
    from baselines.builder import BuildContext
    from baselines.registry import get_builder

    method = {**resolve_method(name, {"r": 2}), **extra}  # a key the method file may add
    builder = get_builder(method)
    ctx = BuildContext.for_method(method, torch.float32)
    model = builder.build(tiny_model_dir, method, ctx)
    optimizer = builder.optimizer(model, method, ctx)
    assert type(optimizer) is getattr(sft, expected) is model.sft_config.optimizer_class
    assert optimizer.param_groups[0]["lr"] == method["lr"]
    if expected == "SftSM3":
        assert optimizer.param_groups[0]["momentum"] == 0.5
