"""Shared fixtures: generated MovieLens-format data, and a whole small pipeline run on it.

Every default path of pipeline.config points into a temporary root for the whole session (set before
any pipeline module is imported), so no test writes into the repository's own data/ or artifacts/.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
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


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    return write_fake_movielens(tmp_path_factory.mktemp("raw") / "ml-1m")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, raw_dir) -> Path:
    """A root folder laid out like the repo's (data/processed, artifacts/models) after a real, tiny run:
    preprocess on generated data, retrieval, the models trained for one epoch, evaluate, report."""
    from pipeline.data import preprocess
    from pipeline.evaluation import evaluate, report
    from pipeline.retrieval import ease
    from pipeline.training import train

    root = tmp_path_factory.mktemp("run")
    processed_dir, artifacts_dir = root / "data" / "processed", root / "artifacts"
    models_dir = artifacts_dir / "models"
    processed = preprocess.preprocess(*preprocess.read_raw(raw_dir))
    preprocess.save_processed(processed, processed_dir)
    for split, names in SMALL_RUN_MODELS.items():
        data = processed.split(split)
        ease.save(ease.fit(data.train, len(data.users), len(data.movies)), ease.path(split, models_dir))
        for name in names:
            train.train_and_save(name, small_config(name, split), data, split, models_dir, progress=False)
    results = evaluate.evaluate_models(processed, SMALL_RUN_MODELS, models_dir, artifacts_dir, echo=lambda line: None)
    from pipeline.files import write_json

    write_json(artifacts_dir / "metrics.json", results)
    report.write_report(artifacts_dir)
    return root
