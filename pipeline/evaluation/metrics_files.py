"""metrics.json on disk: which command remakes it, and reading it checked against its manifest.

make evaluates into three folders, each with its own target: artifacts/ (`make evaluate`), artifacts/study/
(`make study`) and artifacts/repro/ (`make repro`). A metrics.json in another folder (a SYNTHETIC run's, one a
test made) is remade by the `python -m pipeline evaluate` command line that wrote it, which its manifest
records as its producer (pipeline.manifests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline import config, manifests

NAME = "metrics.json"
MAKE_TARGETS = {config.ARTIFACTS_DIR: "make evaluate", config.STUDY_DIR: "make study", config.REPRO_DIR: "make repro"}


def make_target(folder: Path) -> str | None:
    """The make target that writes folder/metrics.json; None for a folder make does not evaluate into."""
    where = os.path.abspath(folder)
    return next((target for known, target in MAKE_TARGETS.items() if os.path.abspath(known) == where), None)


def read(path: Path) -> dict:
    """A metrics.json, checked against its manifest: manifests.ArtifactError, naming the file and the command that
    remakes it (its folder's make target, else its manifest's producer), if it is missing, damaged or not JSON."""
    with manifests.checked(path, make_target(Path(path).parent)) as readable:
        return json.loads(readable.read_text(encoding="utf-8"))
