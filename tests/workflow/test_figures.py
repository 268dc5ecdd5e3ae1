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


LABELS = {"lora": "LoRA", "sft-ag": "SFT-AG", "ia3": "(IA)3"}


def grid_fixture():
    rows = []
    for method, best in [("lora", (1e-4, 16)), ("sft-ag", (1e-3, 4))]:
        for lr in (1e-4, 1e-3):
            for r in (4, 16):
                score = 1.0 if (lr, r) == best else 2.0 + lr + r / 100
                rows.append({"model": "m", "method": method, "hp": f"lr={lr},r={r}", "searched": "lr,r",
                             "lr": lr, "r": r, "weight_decay": 0.0, "score": score})
    return pd.DataFrame(rows)


def paper_like_fixture():
    """SFT-AG: lr x r, then weight decay alone; (IA)3: the learning rate alone."""
    rows = [{"model": "m", "method": "sft-ag", "hp": f"weight_decay={wd}", "searched": "weight_decay",
             "lr": 2e-5, "r": 64, "weight_decay": wd, "score": 0.4 + wd / 100} for wd in (0, 1, 3)]
    rows += [{"model": "m", "method": "ia3", "hp": f"lr={lr}", "searched": "lr", "lr": lr, "r": None,
              "weight_decay": 0.0, "score": 0.3 + lr} for lr in (1e-5, 1e-4)]
    return pd.concat([grid_fixture(), pd.DataFrame(rows)], ignore_index=True)


def test_best_settings_lower_and_higher_is_better():
    grid = grid_fixture()
    best = figures.best_settings(grid, lower_is_better=True, labels=LABELS).set_index("method")
    assert (best.loc["LoRA", "lr"], best.loc["LoRA", "r"]) == (1e-4, 16)
    assert (best.loc["SFT-AG", "lr"], best.loc["SFT-AG", "r"]) == (1e-3, 4)
    assert best.loc["SFT-AG", "method_id"] == "sft-ag" and best.loc["SFT-AG", "hp"] == "lr=0.001,r=4"
    worst = figures.best_settings(grid, lower_is_better=False, labels=LABELS).set_index("method")
    assert worst.loc["LoRA", "score"] > 2.0


def test_best_settings_compares_points_by_their_mean_over_seeds():
    """One lucky seed does not win: lr 1e-3 scores 1.0 and 3.0 (mean 2.0), lr 1e-4 1.5 twice."""
    rows = [{"model": "m", "method": "lora", "hp": hp, "searched": "lr", "lr": lr, "score": score}
            for hp, lr, scores in [("lr=0.001", 1e-3, (1.0, 3.0)), ("lr=0.0001", 1e-4, (1.5, 1.5, None))]
            for score in scores]
    best = figures.best_settings(pd.DataFrame(rows), lower_is_better=True, labels=LABELS)
    assert best[["hp", "score"]].values.tolist() == [["lr=0.0001", 1.5]]
    assert best[["seeds", "score_seed_sd"]].values.tolist() == [[2, 0.0]]  # its spread beside it


def figure4_axes(monkeypatch, tmp_path, grid, score):
    """Each panel's (title, x label, y label), colorbars apart, and their score labels."""
    seen = {}
    real_save = figures._save

    def spy(fig, path):
        panels = [a for a in fig.axes if a.get_title()]
        seen["panels"] = [(a.get_title(), a.get_xlabel(), a.get_ylabel()) for a in panels]
        seen["colorbars"] = [a.get_ylabel() for a in fig.axes if not a.get_title()]
        real_save(fig, path)

    monkeypatch.setattr(figures, "_save", spy)
    out = tmp_path / "figure4.png"
    figures.figure4(grid, score, out, LABELS)
    assert out.stat().st_size > 1000
    return seen


def test_figure4_draws_only_what_was_searched(tmp_path, monkeypatch):
    seen = figure4_axes(monkeypatch, tmp_path, grid_fixture(), "heldout_loss")
    heat = ("learning rate", "budget (LoRA-equivalent rank r)")
    assert seen["panels"] == [("LoRA", *heat), ("SFT-AG", *heat)]  # no empty weight-decay panels
    assert seen["colorbars"] == ["heldout_loss (lower is better)"] * 2


def test_figure4_adds_a_line_per_one_dimensional_search(tmp_path, monkeypatch):
    grid = paper_like_fixture()
    assert figures.figure4_panels(grid) == [("ia3", ("lr",)), ("lora", ("lr", "r")),
                                            ("sft-ag", ("lr", "r")), ("sft-ag", ("weight_decay",))]
    seen = figure4_axes(monkeypatch, tmp_path, grid, "mmlu")
    heat = ("learning rate", "budget (LoRA-equivalent rank r)")
    assert seen["panels"] == [("(IA)3", "learning rate", "mmlu (higher is better)"), ("LoRA", *heat),
                              ("SFT-AG", *heat), ("SFT-AG", "weight decay", "mmlu (higher is better)")]
    assert seen["colorbars"] == ["mmlu (higher is better)"] * 2


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
