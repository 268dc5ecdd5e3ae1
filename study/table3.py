"""Table 3 from measurement records, labelled and compared by the methods' own files.

    python -m study.table3 results/profile/*/*/*.json --out-dir results
"""
from __future__ import annotations

import argparse
from pathlib import Path

from analysis.table3 import read_records, write_table3
from baselines.config import method_facts


def table3_from_records(paths: list[Path], csv: Path, md: Path, png: Path,
                        model_configs: dict[str, str] | None = None):
    """``model_configs`` (model -> config.json, its folder or hub id; Plan.model_path gives
    them) adds the cost model's predicted columns."""
    records = read_records(list(paths))
    methods = list(dict.fromkeys(r["spec"]["method"] for r in records))
    return write_table3(records, {m: method_facts(m) for m in methods}, csv, md, png, model_configs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Table 3 from measurement records")
    p.add_argument("records", nargs="+", type=Path)
    p.add_argument("--out-dir", type=Path, default=Path("results"))
    p.add_argument("--model-config", action="append", default=[], metavar="MODEL=CONFIG",
                   help="a model's config.json, folder or hub id: adds the cost model's predictions")
    a = p.parse_args(argv)
    configs = dict(item.split("=", 1) for item in a.model_config if "=" in item)
    if len(configs) != len(a.model_config):
        p.error("--model-config takes MODEL=CONFIG")
    table3_from_records(a.records, a.out_dir / "table3.csv", a.out_dir / "table3.md",
                        a.out_dir / "figure_memory_time.png", configs or None)
    print((a.out_dir / "table3.md").read_text())


if __name__ == "__main__":
    main()
