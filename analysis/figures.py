"""Figures 3 and 4 and Table 4, drawn from result files only (regenerating them trains nothing)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from artifacts.atomic import atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)


def age_shares(grown_at: np.ndarray, n_reselections: int) -> np.ndarray:
    """Share of indices (in %) by the reselection iteration at which each was last grown.

    Iteration 0 is the initial (random) selection; 1..n are the reselections.
    """
    counts = np.bincount(np.asarray(grown_at, dtype=np.int64), minlength=n_reselections + 1)
    return 100.0 * counts / max(counts.sum(), 1)


def grown_at_of(artifact: Path) -> np.ndarray:
    """Every tuned matrix's ``grown_at`` (int32) from a saved sparse delta, read alone: the
    values beside it may be bf16 (qSFT), which numpy cannot hold."""
    from safetensors import safe_open

    with safe_open(str(artifact), framework="numpy") as f:
        return np.concatenate([f.get_tensor(k) for k in f.keys() if k.endswith(".grown_at")])


def figure3(runs: dict[str, tuple[np.ndarray, int]], path: Path) -> None:
    """Parameter ages: one line per (method, model size) label -> (grown_at, n_reselections)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, (grown_at, n) in sorted(runs.items()):
        ax.plot(np.arange(n + 1), age_shares(grown_at, n), marker="o", ms=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole numbers
    ax.set_xlabel("reselection iteration at which the index was last grown")
    ax.set_ylabel("share of final indices (%)")
    ax.set_title("Figure 3: parameter ages of the converged index set")
    if runs:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no SFT run in this config", ha="center", transform=ax.transAxes)
    _save(fig, path)


def best_settings(grid: pd.DataFrame, lower_is_better: bool, labels: dict[str, str]) -> pd.DataFrame:
    """Table 4: the best hyperparameters per (model, method) by the dev score; `labels` maps a
    method to its row label."""
    scored = grid.dropna(subset=["score"])
    pick = scored.groupby(["model", "method"])["score"].idxmin() if lower_is_better else \
        scored.groupby(["model", "method"])["score"].idxmax()
    best = scored.loc[pick.values].copy()
    best["method"] = best["method"].map(lambda m: labels.get(m, m))
    return best.reset_index(drop=True)


def figure4(grid: pd.DataFrame, score_label: str, path: Path, labels: dict[str, str]) -> None:
    """Heatmaps of the dev score over learning rate x budget (r), one panel per method,
    plus the score against weight decay where the grid varies it."""
    methods = sorted(grid["method"].unique())
    n = max(len(methods), 1)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 6.4), squeeze=False)
    for col, method in enumerate(methods):
        sub = grid[grid["method"] == method]
        lr_r = sub[sub["weight_decay"] == sub["weight_decay"].min()] if "weight_decay" in sub else sub
        heat = lr_r.pivot_table(index="r", columns="lr", values="score", aggfunc="mean")
        ax = axes[0, col]
        im = ax.imshow(heat.values, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(heat.shape[1]), [f"{v:g}" for v in heat.columns], rotation=45)
        ax.set_yticks(range(heat.shape[0]), [f"{v:g}" for v in heat.index])
        for (i, j), v in np.ndenumerate(heat.values):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("budget (LoRA-equivalent rank r)")
        ax.set_title(labels.get(method, method))
        fig.colorbar(im, ax=ax, label=score_label)
        wd = sub.groupby("weight_decay")["score"].mean() if "weight_decay" in sub else None
        ax = axes[1, col]
        if wd is not None and len(wd) > 1:
            ax.plot(wd.index, wd.values, marker="o")
            ax.set_xscale("symlog", linthresh=0.1)
        else:
            ax.text(0.5, 0.5, "weight decay not varied", ha="center", transform=ax.transAxes)
        ax.set_xlabel("weight decay")
        ax.set_ylabel(score_label)
    fig.suptitle("Figure 4: hyperparameter search (dev score)")
    fig.tight_layout()
    _save(fig, path)
