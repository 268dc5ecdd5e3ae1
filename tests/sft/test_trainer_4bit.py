"""transformers.Trainer trains an SftModel over a 4-bit (NF4) base loaded by from_pretrained,
which it refuses for the bare quantized model."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from conftest import tiny_llama, token_batch
from sft import SftAdamW, SftConfig, SftModel, SftSelector, SftTrainerCallback, get_sft_model

pytest.importorskip("bitsandbytes")
transformers = pytest.importorskip("transformers")


class _Tokens(Dataset):
    def __init__(self):
        self.ids = token_batch(0, batch=8)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _load_4bit(path):
    config = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                             bnb_4bit_use_double_quant=True,
                                             bnb_4bit_compute_dtype=torch.bfloat16)
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, quantization_config=config, dtype=torch.bfloat16, device_map={"": "cpu"})


def _trainer(model, tmp_path, **kwargs):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        label_names=["labels"], dataloader_num_workers=0)
    return transformers.Trainer(model=model, args=args, train_dataset=_Tokens(), **kwargs)


def test_trainer_trains_deltas_over_a_4bit_base(tmp_path):
    tiny_llama().save_pretrained(tmp_path / "base")
    base = _load_4bit(tmp_path / "base")
    assert base.is_quantized
    with pytest.raises(ValueError, match="purely quantized"):
        _trainer(base, tmp_path)

    model = get_sft_model(base, SftConfig(density=0.05, delta_dtype="bfloat16"))
    opt = SftAdamW(model.trainable_parameters_groups, lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    trainer = _trainer(model, tmp_path, optimizers=(opt, scheduler),
                       callbacks=[SftTrainerCallback(SftSelector(model, opt, 2))])
    trainer.train()
    assert all(layer.values.abs().sum() > 0 for _, layer in model.sft_layers())

    model.save_pretrained(tmp_path / "sft")
    frozen = SftModel.from_pretrained(model.unload(), tmp_path / "sft")  # nothing to train
    with pytest.raises(ValueError, match="purely quantized"):
        _trainer(frozen, tmp_path)
