"""Figures render from fixture results, with the expected axes; Table 4 picks the right best."""
import numpy as np
import pandas as pd
import pytest

from analysis import figures


def test_age_shares():
    shares = figures.age_shares(np.array([1, 1, 2, 3, 3, 3]), 4)
    assert shares.tolist() == pytest.approx([0, 100 / 3, 100 / 6, 50, 0])


def test_figure3_renders(tmp_path, monkeypatch):
    seen = {}
    real_save = figures._save

    def spy(fig, path):
        ax = fig.axes[0]
        seen.update(xlabel=ax.get_xlabel(), ylabel=ax.get_ylabel(), lines=len(ax.lines),
                    whole_ticks=all(float(t).is_integer() for t in ax.get_xticks()))
        real_save(fig, path)

    monkeypatch.setattr(figures, "_save", spy)
    runs = {"SFT-AG, m": (np.array([1, 2, 2, 4]), 4), "SFT-MA, m": (np.array([1, 1, 4]), 4)}
    out = tmp_path / "figure3.png"
    figures.figure3(runs, out)
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    assert seen == {"xlabel": "reselection iteration at which the index was last grown",
                    "ylabel": "share of final indices (%)", "lines": 2, "whole_ticks": True}


LABELS = {"lora": "LoRA", "sft-ag": "SFT-AG"}


def grid_fixture():
    rows = []
    for method, best in [("lora", (1e-4, 16)), ("sft-ag", (1e-3, 4))]:
        for lr in (1e-4, 1e-3):
            for r in (4, 16):
                score = 1.0 if (lr, r) == best else 2.0 + lr + r / 100
                rows.append({"model": "m", "method": method, "lr": lr, "r": r,
                             "weight_decay": 0.0, "score": score})
    return pd.DataFrame(rows)


def test_best_settings_lower_and_higher_is_better():
    grid = grid_fixture()
    best = figures.best_settings(grid, lower_is_better=True, labels=LABELS).set_index("method")
    assert (best.loc["LoRA", "lr"], best.loc["LoRA", "r"]) == (1e-4, 16)
    assert (best.loc["SFT-AG", "lr"], best.loc["SFT-AG", "r"]) == (1e-3, 4)
    worst = figures.best_settings(grid, lower_is_better=False, labels=LABELS).set_index("method")
    assert worst.loc["LoRA", "score"] > 2.0


def test_figure4_renders_heatmaps(tmp_path, monkeypatch):
    seen = []
    real_save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: (seen.extend(
        (a.get_xlabel(), a.get_ylabel()) for a in fig.axes), real_save(fig, path)))
    out = tmp_path / "figure4.png"
    figures.figure4(grid_fixture(), "heldout_loss", out, LABELS)
    assert out.stat().st_size > 1000
    assert ("learning rate", "budget (LoRA-equivalent rank r)") in seen
    assert ("weight decay", "heldout_loss") in seen


def test_grown_at_is_read_beside_bf16_values(tmp_path):
    """qSFT saves bf16 deltas, which numpy cannot decode: only `grown_at` is read."""
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "sft_model.safetensors"
    save_file({"a.values": torch.ones(3, dtype=torch.bfloat16),
               "a.grown_at": torch.tensor([0, 1, 2], dtype=torch.int32),
               "b.values": torch.ones(2, dtype=torch.bfloat16),
               "b.grown_at": torch.tensor([2, 2], dtype=torch.int32)}, str(path))
    assert sorted(figures.grown_at_of(path).tolist()) == [0, 1, 2, 2, 2]
