"""The study's other DeepCTR rankers: each builds from the two-stage ranker's columns, trains on candidate lists,
scores them, and scores the same after a save and a reload; sequence models read the latest liked movies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline import config
from pipeline.data import preprocess, raw_files
from pipeline.ranking import architecture, model_files, ranker_inputs, scorers
from pipeline.retrieval import retriever
from pipeline.training import ranker
from tests.conftest import small_config

# A layer of the architecture's own DeepCTR constructor (its interaction layer; WDL has none but its
# linear part and the DNN), so that a name that built another architecture's model is noticed.
SIGNATURE_LAYERS = {
    "deepfm": "FM",
    "xdeepfm": "CIN",
    "dcn": "CrossNet",
    "dcnmix": "CrossNetMix",
    "fibinet": "BilinearInteraction",
    "nfm": "BiInteractionPooling",
    "wdl": "Linear",
    "din": "AttentionSequencePoolingLayer",
    "bst": "Transformer",
    "fwfm": "FwFMLayer",
    "pnn": "InnerProductLayer",
}

# tf.data's functions stay traced whatever run_functions_eagerly says, as TensorFlow warns once per dataset.
pytestmark = pytest.mark.filterwarnings("ignore:Even though the `tf.config.experimental_run_functions_eagerly`")


@pytest.fixture(scope="module", autouse=True)
def eagerly():
    """TensorFlow runs this file's model code eagerly: traced (each architecture's train and scoring steps), nine of
    the twelve took 228 s at load 4.5, FiBiNET alone 88 s. The traced path is the one test_ranker and every real
    run take."""
    from pipeline import quiet_imports

    tf = quiet_imports.tensorflow()
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def data(raw_dir):
    return preprocess.preprocess(*raw_files.read_raw(raw_dir))


@pytest.fixture(scope="module")
def lists(data):
    """Training lists every study ranker shares (they agree on config.LIST_SETTINGS), cut to one batch: each
    architecture's build (twice: trained, then reloaded) costs more than its steps, and one step shows it trains."""
    cfg = small_config(config.model_name(config.DEFAULT_ARCHITECTURE))
    assert all(
        getattr(small_config(name), setting) == getattr(cfg, setting)
        for name in config.STUDY_RANKERS
        for setting in config.LIST_SETTINGS
    )
    lists = ranker.training_lists(data.train, data.users, len(data.movies), cfg)
    return lists.take(slice(0, cfg.batch_size // cfg.candidates))


@pytest.fixture(scope="module")
def fitted(data):
    """The retrieval stage the reloaded scorers are given (fitted once: every ranker's reload takes the same)."""
    return retriever.fit(data.train, len(data.users), len(data.movies))


def keras_scores(model, lists, movies, cfg) -> np.ndarray:
    """The trained model's (L, K) scores, called directly on the ranker's input rows."""
    inputs = ranker_inputs.list_inputs(lists, movies, cfg)
    return model(inputs, training=False).numpy()[:, 0].reshape(lists.movies.shape)


def test_every_architecture_a_model_names_has_a_builder_and_the_study_rankers_are_not_served():
    assert {cfg.architecture for cfg in config.MODELS.values()} <= set(architecture.BUILDERS)
    assert set(architecture.BUILDERS) == {*config.ARCHITECTURES, *config.STUDY_ARCHITECTURES}
    assert set(SIGNATURE_LAYERS) == set(config.STUDY_ARCHITECTURES)
    assert not set(config.STUDY_RANKERS) & set(config.models_of(*config.SERVED_MODES))
    assert not set(config.STUDY_RANKERS) & {name for names in config.PRODUCT_MODELS.values() for name in names}
    assert all(set(config.STUDY_RANKERS) <= set(names) for names in config.STUDY_MODELS.values())


def test_sequence_history_is_left_aligned_with_its_length():
    history = np.array([[0, 0, 5, 7], [0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 9]])
    cfg = dataclasses.replace(config.MODELS["bst_two_stage"], history=4)
    inputs = architecture.history_inputs(history, cfg)
    np.testing.assert_array_equal(inputs["hist_movie_id"], [[5, 7, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4], [9, 0, 0, 0]])
    np.testing.assert_array_equal(inputs["seq_length"], [2, 0, 4, 1])
    pooled = architecture.history_inputs(history, config.MODELS["deepfm_two_stage"])
    assert list(pooled) == ["history"] and pooled["history"] is history


# The study's eleven rankers are not in make all or served, and together they were a sixth of make test's time
# (83 of 474 s, --durations=0): make test-slow runs them, and CI runs both.
@pytest.mark.slow
@pytest.mark.parametrize("name", config.STUDY_RANKERS)
def test_a_study_ranker_trains_scores_lists_and_scores_the_same_after_a_reload(name, data, lists, fitted, tmp_path):
    # One batch of 40 lists and no validation pass. DeepCTR starts every embedding near 0 (std 1e-4), so a larger
    # learning rate than SMALL's lets that one step move them enough for the history check below to see.
    cfg = small_config(name, validation_split=0.0, learning_rate=1e-2)
    model, log = ranker.train_ranker(data, cfg, log=lambda line: None, lists=lists)
    assert np.isfinite(log["epochs"][0]["loss"])
    kind = SIGNATURE_LAYERS[cfg.architecture]
    assert kind in {type(layer).__name__ for layer in model.layers}
    inputs = {tensor.name.split(":")[0] for tensor in model.inputs}
    history = {"hist_movie_id", "seq_length"} if cfg.architecture in ("din", "bst") else {"history"}
    assert inputs & {"history", "hist_movie_id", "seq_length"} == history

    movies = ranker_inputs.movie_table(data.movies)
    part = lists.take(slice(0, 6))
    scores = keras_scores(model, part, movies, cfg)
    assert np.isfinite(scores).all() and (scores.std(axis=1) > 0).all()

    # The latest liked movie of a history shorter than the field moves the scores (a sequence model that masked
    # the wrong end would not see it).
    short = int(np.flatnonzero((part.history[:, 0] == 0) & (part.history[:, -1] > 0))[0])
    changed = part.history.copy()
    changed[short, -1] = changed[short, -1] % len(data.movies) + 1
    moved = keras_scores(model, dataclasses.replace(part, history=changed), movies, cfg)
    assert not np.allclose(moved[short], scores[short], rtol=0, atol=1e-6)

    model_files.save_model(model, log, name, "random", tmp_path)
    reloaded = scorers.load_scorer(name, "random", tmp_path, fitted, data.movies)
    assert reloaded.cfg.architecture == cfg.architecture
    # The memory-hungry ones score in smaller calls (at 262,144 rows a call they ran out of memory on ML-1M).
    smaller = cfg.architecture in ("din", "xdeepfm", "bst")
    assert reloaded.scorer.runtime.batch_rows == (16_384 if smaller else config.SCORING_BATCH_ROWS)
    np.testing.assert_allclose(reloaded.scorer(part, reloaded.movies), scores, rtol=1e-5, atol=1e-6)
