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
from collections import Counter
from collections.abc import Callable
from pathlib import Path

os.environ["ML_PIPELINE_ROOT"] = tempfile.mkdtemp(prefix="pipeline-tests-")

import pytest  # noqa: E402

from pipeline import config  # noqa: E402
from tests.fake_movielens import write_fake_movielens  # noqa: E402

# The models the small run trains, per split: the product's (reference and two-stage) on the random split,
# and one two-stage model on the temporal split so the temporal code path runs too.
SMALL_RUN_MODELS = {"random": config.PRODUCT_MODELS["random"], "temporal": ("autoint_two_stage",)}
# Settings that make the generated data train in seconds: one epoch, one self-attention layer (the product's
# three build, trace and export the same layer code three times over; no test here is about the depth), and
# candidate lists that fit the 200-movie catalogue.
SMALL = {"epochs": 1, "learning_rate": 1e-3, "batch_size": 512, "att_layer_num": 1}
SMALL_TWO_STAGE = {"candidates": 40, "batch_size": 1600, "folds": 3}


def small_config(name: str, split: str = "random", **changes) -> config.TrainConfig:
    cfg = config.model_settings(name, split)
    return dataclasses.replace(cfg, **{**SMALL, **(SMALL_TWO_STAGE if cfg.candidates else {}), **changes})


# The files that take longest in `make test`, slowest first (their CPU seconds, one file at a time, --durations and
# user + system time; the small run's build is test_serve's, the first file that needs it); see
# pytest_collection_modifyitems.
SLOW_FILES = (
    "test_distributed.py",
    "test_tune.py",
    "test_train.py",
    "test_recommend.py",
    "test_list_streaming.py",
    "test_litert.py",
    "test_train_options.py",
    "test_newcomers.py",
    "test_streaming.py",
    "test_evaluate_chunks.py",
    "test_makefile.py",
    "test_app.py",
    "test_list_shards.py",
    "test_serve.py",
    "test_disk_errors.py",
    "test_als.py",
    "test_app_browser.py",
    "test_precompute_chunks.py",
    "test_damaged_stage_inputs.py",
    "test_make_rebuilds_damaged.py",
    "test_because.py",
    "test_damaged_artifacts.py",
)


def pytest_configure(config) -> None:
    # pytest-xdist (make test) orders files by their number of tests; keep the order below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items) -> None:
    """The order the xdist workers take the files in (a worker takes the next file when it is almost done with
    its own). First the file of those that need small_run with the most tests, so that one worker builds the small
    run (once, see built_once) from the start; then the slow files (SLOW_FILES) that do not need it, which keep the
    other worker busy meanwhile; then every other file, slowest first (SLOW_FILES, then the most tests), so that
    the two workers end together on short files."""
    counts = Counter(item.path for item in items)
    needs_run = {item.path for item in items if "small_run" in getattr(item, "fixturenames", ())}
    builder = max(needs_run, key=lambda path: (counts[path], path.name), default=None)

    def place(path: Path) -> tuple:
        slow = SLOW_FILES.index(path.name) if path.name in SLOW_FILES else len(SLOW_FILES)
        part = 0 if path == builder else 1 if path not in needs_run and path.name in SLOW_FILES else 2
        return part, slow, -counts[path], path.name

    items.sort(key=lambda item: place(item.path))  # stable: keeps each file's own order


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
    from pipeline.data import preprocess, raw_files
    from pipeline.data.processed import save_processed

    def build(folder: Path) -> None:
        save_processed(preprocess.preprocess(*raw_files.read_raw(raw_dir)), folder)

    return built_once(tmp_path_factory, "processed", build)


def build_small_run(root: Path, raw_dir: Path) -> None:
    """A tiny real run into `root`: preprocess, retrieval, the models trained for one epoch, exported to LiteRT,
    evaluate, report."""
    from pipeline.data import preprocess, raw_files
    from pipeline.data.processed import save_processed
    from pipeline.evaluation import evaluate, report
    from pipeline.files import write_json
    from pipeline.ranking import export
    from pipeline.retrieval import retriever
    from pipeline.training import train

    processed_dir, artifacts_dir = root / "data" / "processed", root / "artifacts"
    models_dir = artifacts_dir / "models"
    processed = preprocess.preprocess(*raw_files.read_raw(raw_dir))
    save_processed(processed, processed_dir)
    for split, names in SMALL_RUN_MODELS.items():
        data = processed.split(split)
        retriever.save(retriever.fit(data.train, len(data.users), len(data.movies)), retriever.path(split, models_dir))
        for name in names:
            train.train_and_save(name, small_config(name, split), data, split, models_dir, progress=False)
    # The served models' LiteRT files (make export), which the serving paths run.
    for name in config.models_of(*config.SERVED_MODES):
        export.export_model(name, "random", models_dir, ["float32"])
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


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, small_run) -> Path:
    """The small run with every user's precomputed Top-20 of both two-stage models, as `make all` leaves it
    (`precompute --n 20`). Built once per session like small_run, and read-only like it."""

    def build(root: Path) -> None:
        from typer.testing import CliRunner

        from pipeline.cli import app

        shutil.copytree(small_run, root, dirs_exist_ok=True)  # copy2: mtimes kept, so every manifest still holds
        folders = ["--processed-dir", str(root / "data" / "processed"), "--models-dir", str(root / "artifacts/models")]
        result = CliRunner().invoke(app, ["precompute", "--n", "20", *folders])
        assert result.exit_code == 0, result.output

    return built_once(tmp_path_factory, "finished", build)
