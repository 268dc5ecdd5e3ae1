"""Each method of a table against the table's reference method (LoRA in Table 1, qLoRA in
Table 2), column by column, on the same items.

Per method x column: the difference (method - reference, in the table's units), its 95% paired
bootstrap interval and a two-sided p-value (McNemar's exact test where both sides are one seed
of right/wrong answers, else the paired bootstrap's), from analysis.intervals. With several seeds
the difference is between the seeds' means (the interval over items), and `difference_seed_sd`
is the sample sd over seeds of the per-seed difference (seed s against the reference's seed s,
which trained on the same data order), the training randomness beside the items'. A comparison
without both cells, their per-item values, or the same items is empty and `note` says why.
"""
from __future__ import annotations

from pathlib import Path
from statistics import stdev

import pandas as pd

from analysis.intervals import N_RESAMPLES, ItemMismatch, paired_difference
from analysis.results import Cell, is_loss, result_key, scale_of
from analysis.tables import Cells, column_name, digits, display_label
from artifacts.atomic import write_text

COLUMNS = ["model", "method", "method_id", "reference_id", "column", "difference",
           "difference_low", "difference_high", "difference_seed_sd", "p_value", "test", "n_items",
           "lower_is_better", "note"]


def _measured(cells: list[Cell], who: str) -> tuple[list[Cell], str]:
    """(the seeds with a value and per-item values, or [] with the reason there are none)."""
    measured = [c for c in cells if c.value is not None]
    if not measured:
        return [], f"{who}: {cells[0].reason}"
    if any(c.items is None for c in measured):
        return [], f"{who}: no per-item samples"
    return measured, ""


def _seed_sd(ours: list[Cell], theirs: list[Cell]) -> float | None:
    """Sample sd over seeds of (our seed s - the reference's seed s), where both have a value."""
    diffs = [a.value - b.value for a, b in zip(ours, theirs)
             if a.value is not None and b.value is not None]
    return stdev(diffs) if len(diffs) > 1 else None


def compare_to_reference(cells: Cells, models: list[str], labels: dict[str, str],
                         columns: list[tuple[str, str]], reference: str) -> pd.DataFrame:
    """One row per (model, method other than `reference`, column), as `COLUMNS`."""
    rows = []
    ref_label = labels.get(reference, reference)
    for model in models:
        for method, label in labels.items():
            if method == reference:
                continue
            for role, bench in columns:
                col = column_name(role, bench)
                row = dict.fromkeys(COLUMNS)
                row.update(model=model, method=label, method_id=method, reference_id=reference,
                           column=col, lower_is_better=is_loss(bench), test="", note="")
                rows.append(row)
                if reference not in labels:
                    row["note"] = f"the reference {reference!r} is not a method of this table"
                    continue
                ours, why = _measured(cells[model, method, col], label)
                theirs, why_ref = _measured(cells[model, reference, col], f"reference {ref_label}")
                if not (ours and theirs):
                    row["note"] = "; ".join(w for w in (why, why_ref) if w)
                    continue
                try:
                    diff = paired_difference([c.items for c in ours], [c.items for c in theirs])
                except ItemMismatch as e:
                    row["note"] = f"not scored on the same items as {ref_label}: {e}"
                    continue
                scale = scale_of(result_key(role, bench))
                row.update(difference=scale * diff.value, difference_low=scale * diff.low,
                           difference_high=scale * diff.high, p_value=diff.p_value,
                           test=diff.test, n_items=diff.n_items,
                           difference_seed_sd=_seed_sd(cells[model, method, col],
                                                       cells[model, reference, col]))
                seeds = [(len(ours), len(cells[model, method, col])),
                         (len(theirs), len(cells[model, reference, col]))]
                if any(have < planned for have, planned in seeds):
                    row["note"] = (f"seeds measured: {len(ours)} of {seeds[0][1]} ({label}), "
                                   f"{len(theirs)} of {seeds[1][1]} ({ref_label})")
    return pd.DataFrame(rows, columns=COLUMNS)


def _row_text(row) -> dict:
    if pd.isna(row["difference"]):
        return {"model": row["model"], "method": row["method"], "column": display_label(row["column"]),
                "difference [95% CI]": "", "p": "", "test": "", "note": row["note"]}
    d = digits(row["column"].partition("/")[2])
    sd = row["difference_seed_sd"]
    seeds = "" if sd is None or pd.isna(sd) else f" (seed sd {sd:.{d}f})"
    floor = 2 / (N_RESAMPLES + 1)  # the smallest p the bootstrap can give
    p = (f"≤ {floor:.2g}" if row["test"] == "paired bootstrap" and row["p_value"] <= floor * 1.0001
         else f"{row['p_value']:.3g}")
    return {"model": row["model"], "method": row["method"], "column": display_label(row["column"]),
            "difference [95% CI]": (f"{row['difference']:+.{d}f} [{row['difference_low']:+.{d}f}, "
                                    f"{row['difference_high']:+.{d}f}]{seeds}"),
            "p": p, "test": row["test"], "note": row["note"]}


def write_reference_comparison(frame: pd.DataFrame, csv_path: Path, table: str,
                               reference_label: str) -> None:
    """CSV, and Markdown (same stem) with a line on how to read it."""
    csv_path = Path(csv_path)
    write_text(csv_path, frame.round({"difference": 4, "difference_low": 4, "difference_high": 4,
                                      "difference_seed_sd": 4}).to_csv(index=False))
    intro = (f"# {table}: each method minus {reference_label}, on the same items\n\n"
             "Differences in the table's units (percentage points; nats/token or bits/byte "
             "for losses, where lower is better), with the 95% paired-bootstrap interval over "
             "items (between the seeds' means, with several seeds; \"seed sd\": the sd over seeds "
             "of the per-seed difference). p: two-sided; McNemar's exact test where both sides "
             "are one seed of right/wrong answers, else the paired bootstrap's.\n\n")
    shown = pd.DataFrame([_row_text(r) for _, r in frame.iterrows()],
                         columns=["model", "method", "column", "difference [95% CI]", "p", "test",
                                  "note"])
    write_text(csv_path.with_suffix(".md"),
               intro + shown.to_markdown(index=False, disable_numparse=True) + "\n")
