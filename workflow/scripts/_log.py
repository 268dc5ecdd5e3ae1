"""Helpers shared by the Snakemake adapters: rule logs and failure records."""
import json
import logging
import os
import sys
import traceback
from pathlib import Path


def to_rule_log(snakemake):
    """Send logging, stdout and stderr to the rule's `log:` file."""
    log = open(snakemake.log[0], "w", buffering=1)
    sys.stdout = sys.stderr = log
    logging.basicConfig(stream=log, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)


def record_failures(output, fn):
    """Run `fn`; if it raises, write {"status": "failed", ...} to `output` instead of crashing.

    A failed run then shows up as a failed cell in the tables while every other run's results
    stay intact. Delete the file (or use --forcerun) to retry it.
    """
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - recorded, printed to the rule log, and shown in tables
        traceback.print_exc()
        record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        tmp = Path(str(output) + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, output)
