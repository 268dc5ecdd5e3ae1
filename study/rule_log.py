"""What every Snakemake adapter does first and last: log to the rule's `log:` file, and turn a
failed run into a failure record the tables can show."""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from artifacts.atomic import write_json


def to_rule_log(log_path: str | Path) -> None:
    """Send logging, stdout and stderr to the rule's log file."""
    log = open(log_path, "w", buffering=1)
    sys.stdout = sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)


def record_failures(output: str | Path, fn) -> None:
    """Run `fn`; if it raises, write {"status": "failed", ...} to `output` instead of crashing.

    A failed run then shows up as a failed cell in the tables while every other run's results
    stay intact. Delete the file (or use --forcerun) to retry it.
    """
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - recorded, printed to the rule log, and shown in tables
        traceback.print_exc()
        write_json(output, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, indent=2)
