"""Shared fixtures: generated MovieLens-format data, and a whole small pipeline run on it.

Every default path of pipeline.config points into a temporary root for the whole session (set before
any pipeline module is imported), so no test writes into the repository's own data/ or artifacts/.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ["ML_PIPELINE_ROOT"] = tempfile.mkdtemp(prefix="pipeline-tests-")

import pytest  # noqa: E402

from pipeline import config  # noqa: E402
from tests.fake_movielens import write_fake_movielens  # noqa: E402

# The models the small run trains, per split: the product's (reference and two-stage) on the random split,
# and one two-stage model on the temporal split so the temporal code path runs too.
SMALL_RUN_MODELS = {"random": config.PRODUCT_MODELS["random"], "temporal": ("autoint_two_stage",)}
# Settings that make the generated data train in seconds: one epoch, and candidate lists that fit the
# 200-movie catalogue.
SMALL = {"epochs": 1, "learning_rate": 1e-3, "batch_size": 512}
SMALL_TWO_STAGE = {"candidates": 40, "batch_size": 1600, "folds": 3}


def small_config(name: str, split: str = "random", **changes) -> config.TrainConfig:
    cfg = config.model_settings(name, split)
    return dataclasses.replace(cfg, **{**SMALL, **(SMALL_TWO_STAGE if cfg.candidates else {}), **changes})


def pytest_configure(config) -> None:
    # pytest-xdist (make test) orders files by their number of tests; keep the order below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items) -> None:
    """Files with the most tests first, as xdist would order them, but the files that need small_run after
    all others: while one worker builds it (once, see built_once), the other runs the files that do not."""
    counts: dict[Path, int] = {}
    for item in items:
        counts[item.path] = counts.get(item.path, 0) + 1
    needs_run = {item.path for item in items if "small_run" in getattr(item, "fixturenames", ())}
    items.sort(key=lambda item: (item.path in needs_run, -counts[item.path]))  # stable: keeps each file's order


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """Folder `name`, made by `build(folder)` once per test session, however many xdist workers ask for it.

    Session fixtures are per worker, so it lives in the run's own base temporary folder, which every worker
    of one run shares (each worker's base folder is a child of it). The first worker to take the lock builds
    it under a temporary name and renames it when complete; the others wait on the lock and reuse it.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / name
    with open(shared / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not folder.is_dir():
            building = Path(tempfile.mkdtemp(prefix=f".{name}-building-", dir=shared))
            try:
                build(building)
            except BaseException:
                shutil.rmtree(building, ignore_errors=True)
                raise
            building.rename(folder)
    return folder


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    return write_fake_movielens(tmp_path_factory.mktemp("raw") / "ml-1m")


@pytest.fixture(scope="session")
def small_processed(tmp_path_factory, raw_dir) -> Path:
    """data/processed of the generated data, as small_run holds it (for tests that need no trained model)."""
    from pipeline.data import preprocess

    def build(folder: Path) -> None:
        preprocess.save_processed(preprocess.preprocess(*preprocess.read_raw(raw_dir)), folder)

    return built_once(tmp_path_factory, "processed", build)


def build_small_run(root: Path, raw_dir: Path) -> None:
    """A tiny real run into `root`: preprocess, retrieval, the models trained for one epoch, evaluate, report."""
    from pipeline.data import preprocess
    from pipeline.evaluation import evaluate, report
    from pipeline.files import write_json
    from pipeline.retrieval import retriever
    from pipeline.training import train

    processed_dir, artifacts_dir = root / "data" / "processed", root / "artifacts"
    models_dir = artifacts_dir / "models"
    processed = preprocess.preprocess(*preprocess.read_raw(raw_dir))
    preprocess.save_processed(processed, processed_dir)
    for split, names in SMALL_RUN_MODELS.items():
        data = processed.split(split)
        retriever.save(retriever.fit(data.train, len(data.users), len(data.movies)), retriever.path(split, models_dir))
        for name in names:
            train.train_and_save(name, small_config(name, split), data, split, models_dir, progress=False)
    results = evaluate.evaluate_models(processed, SMALL_RUN_MODELS, models_dir, artifacts_dir, echo=lambda line: None)
    write_json(artifacts_dir / "metrics.json", results)
    report.write_report(artifacts_dir)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, raw_dir) -> Path:
    """A root folder laid out like the repo's (data/processed, artifacts/models) after a real, tiny run:
    preprocess on generated data, retrieval, the models trained for one epoch, evaluate, report.

    Built once per test session and shared by every xdist worker (built_once): treat it as read-only, and
    write into a test's own tmp_path instead."""
    return built_once(tmp_path_factory, "run", lambda root: build_small_run(root, raw_dir))
