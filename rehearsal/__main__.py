"""`python -m rehearsal MIRROR [--seed N] [--force]`: build the stand-ins (see rehearsal)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rehearsal import HUB_IDS, MODEL_IDS, build_all, is_built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal", description=__doc__)
    parser.add_argument("mirror", type=Path, help="writes MIRROR/<owner>/<name> for every stand-in")
    parser.add_argument("--seed", type=int, default=0, help="tokenizer text, rows and weights (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even if MIRROR is up to date")
    args = parser.parse_args(argv)
    fresh = args.force or not is_built(args.mirror, args.seed)
    out = build_all(args.mirror, args.seed, force=args.force)
    print(f"{'built' if fresh else 'up to date'}: {out}")
    for repo in (*MODEL_IDS, *HUB_IDS):
        print(f"  {out}/{repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
