"""End to end on the real SmolLM2-135M (packaged GGUF, prepared once into the cache): SFT-AG
with a LoRA-r4-equal budget learns a short text, and the saved SFT reloads exactly."""
from __future__ import annotations

import pytest
import torch
import yaml

from artifacts.packaged import default_cache_dir
from finetune.models import prepare_model
from sft import (SftAdamW, SftConfig, SftModel, SftSelector, get_sft_model,
                 lora_equivalent_budget)

pytestmark = pytest.mark.slow


def _smollm2():
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())
    folder = prepare_model("smollm2-135m", config["models"]["smollm2-135m"], default_cache_dir())
    return (AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
            AutoTokenizer.from_pretrained(folder))


def test_sft_ag_learns_and_reloads_on_smollm2(tmp_path):
    model, tokenizer = _smollm2()
    budget = lora_equivalent_budget(model, 4)
    assert budget == 4 * 30 * (6 * 576 + 2 * 192 + 3 * (576 + 1536))  # q,o: 576+576; k,v: 576+192
    sft_model = get_sft_model(model, SftConfig(num_tunable_weights=budget, reselection_steps=4,
                                               accumulation_steps=2))
    sft_model.train()
    ids = tokenizer("The quick brown fox jumps over the lazy dog. " * 4, return_tensors="pt").input_ids
    opt = SftAdamW(sft_model.trainable_parameters_groups, lr=3e-3)
    selector = SftSelector(sft_model, opt, 12)
    losses = []
    for _ in range(12):
        loss = sft_model(input_ids=ids, labels=ids).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
        selector.step()
    assert selector.num_reselections == 3 and losses[-1] < 0.7 * losses[0], losses
    sft_model.eval()
    with torch.no_grad():
        expected = sft_model(input_ids=ids).logits
    sft_model.save_pretrained(tmp_path)
    reloaded = SftModel.from_pretrained(sft_model.unload(), tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, expected)
