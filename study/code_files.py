"""The source files of the code a job runs, as Snakemake inputs. A figure rule lists its drawing
modules among its inputs, so that editing one reruns that figure (Snakemake finds the file newer
than the figure) and nothing upstream of it. Snakemake's own `code` rerun trigger watches only
the rule's script, the thin adapter in workflow/scripts/, not the modules it calls."""
from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path


def source_files(*modules: str) -> list[str]:
    """The .py files of `modules` (dotted names; a package: every file under it), found without
    importing them: the DAG must not load matplotlib or torch while it parses."""
    files = []
    for name in modules:
        spec = find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"source_files: no module {name!r}")
        if spec.submodule_search_locations:
            files += sorted(str(p) for folder in spec.submodule_search_locations
                            for p in Path(folder).rglob("*.py"))
        else:
            files.append(spec.origin)
    return files
