"""Where the study's files live under the results folder: the one place that knows the layout.

    results/runs/<run>/      method.json, train_summary.json, metrics.jsonl, artifact/, checkpoints/,
                             fingerprint.json (RunFolder)
    results/evals/<run>/     index.json and one result file per benchmark
    results/profile/<model>/<method>/<ckpt|nockpt>.json   Table 3 measurements
    results/table4.csv       the grid's winners (Table 4)

where <run> is `<model>/<mixture role>/<method>/<hyperparameter tag>/seed<N>`. An untuned model
has mixture role "none"; the tag is "default" (method file plus config overrides) or a grid
point such as "lr=0.0001,r=16". The Snakemake rules build their patterns from `Run.pattern()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NO_MIXTURE = "none"
DEFAULT_HP = "default"


@dataclass(frozen=True)
class Run:
    """One training run (or, for an untuned model, one evaluated model)."""

    model: str
    mixture: str
    method: str
    hp: str = DEFAULT_HP
    seed: int | str = 0

    @property
    def key(self) -> str:
        return f"{self.model}/{self.mixture}/{self.method}/{self.hp}/seed{self.seed}"

    @classmethod
    def pattern(cls) -> "Run":
        """The run with Snakemake wildcards for fields: its paths are the rules' patterns."""
        return cls("{model}", "{mixture}", "{method}", "{hp}", "{seed}")

    @classmethod
    def from_dir(cls, directory: Path) -> "Run":
        """The run whose runs/ or evals/ folder this is (the folder, or a file inside it)."""
        parts = Path(directory).parts
        if parts[-1].endswith(".json"):
            parts = parts[:-1]
        model, mixture, method, hp, seed = parts[-5:]
        if not seed.startswith("seed"):
            raise ValueError(f"{directory}: not a run folder (<model>/<mixture>/<method>/<hp>/seed<N>)")
        return cls(model, mixture, method, hp, int(seed[4:]))


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run's folder, runs/<run>/, for the code that is handed the
    folder itself (training, its fingerprint, evaluation, Figure 3)."""

    path: Path

    @property
    def method(self) -> Path:
        """The resolved method (rule resolve_method writes it): the one copy every reader uses."""
        return self.path / "method.json"

    @property
    def summary(self) -> Path:
        return self.path / "train_summary.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def artifact(self) -> Path:
        """The trained adapter, sparse delta or full weights, as the method's builder saved it."""
        return self.path / "artifact"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def fingerprint(self) -> Path:
        """Which run the checkpoints belong to (finetune.fingerprint)."""
        return self.path / "fingerprint.json"

    def state(self) -> tuple[Path, ...]:
        """What a run leaves in its folder that a different run must not inherit."""
        return (self.checkpoints, self.metrics, self.artifact, self.summary)


class Layout:
    """Paths under one results folder."""

    def __init__(self, results_dir: Path | str):
        self.root = Path(results_dir)

    def run_dir(self, run: Run) -> Path:
        return self.root / "runs" / run.key

    def run_folder(self, run: Run) -> RunFolder:
        return RunFolder(self.run_dir(run))

    def method_file(self, run: Run) -> Path:
        return self.run_folder(run).method

    def summary(self, run: Run) -> Path:
        return self.run_folder(run).summary

    def eval_dir(self, run: Run) -> Path:
        return self.root / "evals" / run.key

    def eval_index(self, run: Run) -> Path:
        return self.eval_dir(run) / "index.json"

    def grid_table(self) -> Path:
        """Table 4: the grid's best setting per model and method, which table runs train with."""
        return self.root / "table4.csv"

    def profile_record(self, model: str, method: str, checkpointing: bool | str) -> Path:
        ckpt = checkpointing if isinstance(checkpointing, str) else ("ckpt" if checkpointing else "nockpt")
        return self.root / "profile" / model / method / f"{ckpt}.json"
