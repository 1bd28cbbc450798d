"""Shared fixtures: generated MovieLens-format data, and a whole small pipeline run on it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline import config
from tests.fake_movielens import write_fake_movielens

# The models the small run trains, per split: both seed models and both ranking models, and one
# temporal-split model so the temporal code path runs too.
SMALL_RUN_MODELS = {"random": (*config.SEED_MODELS, *config.RANKING_MODELS), "temporal": ("autoint_ranking",)}


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    return write_fake_movielens(tmp_path_factory.mktemp("raw") / "ml-1m")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, raw_dir) -> Path:
    """A root folder laid out like the repo's (data/processed, artifacts/models) after a real, tiny run:
    preprocess on generated data, the models trained for one epoch, then evaluate.
    """
    from pipeline import evaluate, preprocess, train

    root = tmp_path_factory.mktemp("run")
    processed_dir, artifacts_dir = root / "data" / "processed", root / "artifacts"
    processed = preprocess.preprocess(*preprocess.read_raw(raw_dir))
    preprocess.save_processed(processed, processed_dir)
    for split, names in SMALL_RUN_MODELS.items():
        data = processed.split(split)
        for name in names:
            cfg = dataclasses.replace(config.MODEL_DEFAULTS[name], epochs=1, learning_rate=1e-3, batch_size=512)
            model, history = train.train_model(data.train, processed.encoders.dims(), cfg, verbose=0,
                                               catalogue=processed.movies)
            path = config.model_path(name, split, artifacts_dir / "models")
            train.save_model(model, history, path.parent, name)
    results, outputs, histories = evaluate.evaluate_splits(processed, artifacts_dir / "models", SMALL_RUN_MODELS)
    evaluate.save_outputs(results, outputs, histories, artifacts_dir, processed)
    return root
