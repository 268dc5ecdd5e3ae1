"""Figures 3 and 4 and Table 4, drawn from result files only (regenerating them trains nothing)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.results import better_direction  # noqa: E402
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
    """Table 4: the best grid point (`hp`) per (model, method) by its dev score, the mean over
    its scored seeds (`seeds`: how many; `score_seed_sd`: their sample sd, empty with one), with
    its method id (what the table runs' resolver looks up) beside the row label that `labels`
    maps it to."""
    scored = grid.dropna(subset=["score"])
    point = ["model", "method", "hp"]
    by_point = scored.groupby(point)["score"]
    scored = scored.assign(score=by_point.transform("mean"), score_seed_sd=by_point.transform("std"),
                           seeds=by_point.transform("count")).drop_duplicates(point)
    pick = scored.groupby(["model", "method"])["score"].idxmin() if lower_is_better else \
        scored.groupby(["model", "method"])["score"].idxmax()
    best = scored.loc[pick.values].rename(columns={"method": "method_id"})
    best.insert(best.columns.get_loc("method_id") + 1, "method",
                [labels.get(m, m) for m in best["method_id"]])
    rest = [c for c in best.columns if c not in ("score_seed_sd", "seeds")]
    at = rest.index("score") + 1
    return best[rest[:at] + ["score_seed_sd", "seeds"] + rest[at:]].reset_index(drop=True)


HP_LABELS = {"lr": "learning rate", "r": "budget (LoRA-equivalent rank r)",
             "weight_decay": "weight decay"}


def figure4_panels(grid: pd.DataFrame) -> list[tuple[str, tuple[str, ...]]]:
    """(method, searched hyperparameters) per search, each a panel of Figure 4: the grid's
    `searched` column names what each point's search varied ("lr,r", "weight_decay")."""
    panels = []
    for method in sorted(grid["method"].unique()):
        for searched in dict.fromkeys(grid.loc[grid["method"] == method, "searched"]):
            panels.append((method, tuple(searched.split(","))))
    return panels


def _heatmap(fig, ax, points: pd.DataFrame, keys: tuple[str, ...], score_axis: str) -> None:
    """The score over the first two searched hyperparameters (any others averaged)."""
    heat = points.pivot_table(index=keys[1], columns=keys[0], values="score", aggfunc="mean",
                              dropna=False)
    im = ax.imshow(heat.values.astype(float), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(heat.shape[1]), [f"{v:g}" for v in heat.columns], rotation=45)
    ax.set_yticks(range(heat.shape[0]), [f"{v:g}" for v in heat.index])
    for (i, j), v in np.ndenumerate(heat.values.astype(float)):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xlabel(HP_LABELS.get(keys[0], keys[0]))
    ax.set_ylabel(HP_LABELS.get(keys[1], keys[1]))
    fig.colorbar(im, ax=ax, label=score_axis)


def _line(ax, points: pd.DataFrame, key: str, score_axis: str) -> None:
    """The score against the one searched hyperparameter."""
    line = points.groupby(key)["score"].mean().dropna()
    ax.plot(line.index.astype(float), line.values, marker="o")
    if key == "weight_decay":
        ax.set_xscale("symlog", linthresh=0.1)  # the searches start at 0
    elif (line.index.astype(float) > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(HP_LABELS.get(key, key))
    ax.set_ylabel(score_axis)


def figure4(grid: pd.DataFrame, score_label: str, path: Path, labels: dict[str, str]) -> None:
    """The dev score over what the grid searched: one row of panels per method, one panel per
    search (figure4_panels), a heatmap over two hyperparameters (lr x r) or a line over one
    (weight decay); every score axis says whether lower or higher is better."""
    score_axis = f"{score_label} ({better_direction(score_label)} is better)"
    panels = figure4_panels(grid) if len(grid) else []
    methods = list(dict.fromkeys(method for method, _ in panels)) or [None]
    n_cols = max([sum(m == method for m, _ in panels) for method in methods] + [1])
    fig, axes = plt.subplots(len(methods), n_cols, figsize=(4.2 * n_cols, 3.4 * len(methods)),
                             squeeze=False)
    used = set()
    for method, keys in panels:
        row = methods.index(method)
        col = sum(1 for (r, c) in used if r == row)
        used.add((row, col))
        ax = axes[row, col]
        points = grid[(grid["method"] == method) & (grid["searched"] == ",".join(keys))]
        if len(keys) > 1:
            _heatmap(fig, ax, points, keys, score_axis)
        else:
            _line(ax, points, keys[0], score_axis)
        others = f" (mean over {', '.join(keys[2:])})" if len(keys) > 2 else ""
        ax.set_title(labels.get(method, method) + others)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no grid point in this config", ha="center", transform=axes[0, 0].transAxes)
        used.add((0, 0))
    for (row, col), ax in np.ndenumerate(axes):
        if (row, col) not in used:
            fig.delaxes(ax)
    fig.suptitle(f"Figure 4: hyperparameter search (dev score {score_axis})")
    fig.tight_layout()
    _save(fig, path)
