"""What a run is, as one hash: its resolved method, training settings, seed, data, model and
training code. Checkpoints are resumed only by the run that wrote them: a changed learning rate,
mixture, model or code version starts afresh instead of continuing someone else's weights. The
method's `setting_source` (where its setting came from: a grid point, Table 4's winner) is a
record, not something training reads, so it is left out: a table run that trains the grid's
winning point is the same run as that point, and reuses it (`reuse_finished_run`)."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from artifacts.atomic import atomic_dir, write_json
from artifacts.content_hash import cached_sha256
from artifacts.layout import RunFolder
from baselines.checks import SETTING_SOURCE

log = logging.getLogger("finetune.train")

# The packages whose code decides what training computes.
TRAINING_CODE = ("sft", "baselines", "finetune")


def _model_identity(model_path: str) -> dict:
    """A local folder: the content hash of each of its files (weights re-converted or saved
    anew in place change it, whatever their size); a hub id: the commit of the revision that
    from_pretrained reads (a commit's files never change)."""
    folder = Path(model_path)
    if not folder.is_dir():
        return {"hub_id": model_path, "revision": _hub_commit(model_path)}
    return {"files": {p.name: cached_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}}


def _hub_commit(repo_id: str) -> str:
    """The commit of `repo_id`'s main revision: the hub cache's snapshot (jobs run offline, after
    the download rule), else asked of the hub."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True)).name
    except LocalEntryNotFoundError:
        return HfApi().model_info(repo_id).sha


def _code_version() -> str:
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in TRAINING_CODE:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    try:
        release = version("spiel-sft")
    except PackageNotFoundError:
        release = "unknown"
    return f"{release}+{digest.hexdigest()[:16]}"


def run_fingerprint(model_path: str, data_path: Path, method: dict, train_cfg: dict, seed: int) -> dict:
    parts = {"method": {k: v for k, v in method.items() if k != SETTING_SOURCE}, "train": train_cfg, "seed": seed,
             "data_sha256": cached_sha256(Path(data_path)), "model": _model_identity(model_path),
             "code": _code_version()}
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return {"sha256": hashlib.sha256(blob).hexdigest(), **parts}


def claim_run_dir(run_dir: Path, fingerprint: dict) -> list[str]:
    """Make `run_dir` this run's: when it holds another run's state (another fingerprint, or
    state without one), remove that state. Returns what was removed."""
    folder = RunFolder(Path(run_dir))
    path = folder.fingerprint
    try:
        stored = json.loads(path.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        stored = None
    removed = []
    if stored != fingerprint["sha256"]:
        for target in folder.state():
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            else:
                continue
            removed.append(target.name)
        if removed:
            log.warning("%s held another run's state (%s); starting afresh", run_dir, ", ".join(removed))
        write_json(path, fingerprint, indent=2, sort_keys=True)
    return removed


def matches(run_dir: Path, fingerprint: dict) -> bool:
    try:
        return json.loads(RunFolder(Path(run_dir)).fingerprint.read_text())["sha256"] == fingerprint["sha256"]
    except (OSError, ValueError, KeyError):
        return False


def _finished_fingerprint(run_dir: Path) -> str | None:
    """The fingerprint of a run that finished (summary status ok, artifact saved), else None."""
    folder = RunFolder(Path(run_dir))
    try:
        summary = json.loads(folder.summary.read_text())
        stored = json.loads(folder.fingerprint.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return None
    ok = summary.get("status") == "ok" and summary.get("fingerprint") == stored and folder.artifact.is_dir()
    return stored if ok else None


def reuse_finished_run(donors, fingerprint: dict, run_dir: Path) -> dict | None:
    """When one of `donors` (run folders) finished the very run `fingerprint` describes, copy its
    artifact and metrics into `run_dir` and return its summary with `reused_from`; else None.
    The DAG offers a table run the grid's points on its mixture (study.plan.Plan.training_donors):
    the one it reuses is the winner, trained already."""
    for donor in map(Path, donors):
        if donor.resolve() == Path(run_dir).resolve() or _finished_fingerprint(donor) != fingerprint["sha256"]:
            continue
        source, folder = RunFolder(donor), RunFolder(Path(run_dir))
        claim_run_dir(run_dir, fingerprint)
        with atomic_dir(folder.artifact) as tmp:
            shutil.copytree(source.artifact, tmp, dirs_exist_ok=True)
        shutil.copyfile(source.metrics, folder.metrics)
        summary = {**json.loads(source.summary.read_text()), "reused_from": str(donor)}
        write_json(folder.summary, summary, indent=2, sort_keys=True)
        log.info("%s is the same run as %s (fingerprint %s): reused its artifact, not trained again",
                 run_dir, donor, fingerprint["sha256"][:12])
        return summary
    return None
