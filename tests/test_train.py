import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipeline import config
from pipeline.data import preprocess, raw_files
from pipeline.ranking import architecture, model_files
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.ranking.scorers import ModelScorer, score_rows
from pipeline.training import sampling, train


@pytest.fixture(scope="module")
def processed(raw_dir):
    return preprocess.preprocess(*raw_files.read_raw(raw_dir))


def small(name, **changes):
    return dataclasses.replace(config.MODELS[name], **{"epochs": 1, "batch_size": 1024, **changes})


def quick(name, **changes):
    """small(), on one attention layer: for the tests of training mechanics (seeds, schedules, averaging,
    negatives), where the depth of the model is not what is tested and three layers only cost time."""
    return small(name, att_layer_num=1, **changes)


def test_reference_models_keep_the_original_projects_settings():
    autoint, mlp = config.MODELS["autoint"], config.MODELS["autoint_mlp"]
    assert autoint.dnn_hidden_units == () and mlp.dnn_hidden_units == (32, 32)
    for cfg in (autoint, mlp):
        assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.embedding_dim) == (5, 2048, 1e-4, 16)
        assert (cfg.att_layer_num, cfg.att_head_num, cfg.att_res, cfg.validation_split) == (3, 2, True, 0.1)
    assert mlp.dnn_dropout == 0.4


@pytest.mark.parametrize("name", config.REFERENCE_MODELS)
def test_model_builds_trains_saves_and_reloads_with_identical_predictions(processed, tmp_path, name):
    model, history = train.train_model(processed.train, processed.encoders.dims(), small(name))
    assert [layer.name for layer in model.inputs] == list(config.FIELDS)
    has_dnn = any("dnn" in layer.name for layer in model.layers)
    assert has_dnn == (name == "autoint_mlp")
    assert len(history["epochs"]) == 1 and np.isfinite(history["epochs"][0]["val_loss"])
    path = model_files.save_model(model, history, name, "random", tmp_path)
    reloaded = model_files.load_keras(path)
    before = model.predict(architecture.model_inputs(processed.test), verbose=0)[:, 0]
    after = score_rows(ModelScorer(KerasRuntime(reloaded)), processed.test)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert ((after > 0) & (after < 1)).all()
    assert (tmp_path / f"{name}.training_log.json").is_file()


# Three epochs from a learning rate of 1e-2 halved every epoch: the model several tests of training mechanics
# compare with (trained once: the schedule's test reads its optimizer, the others its weights and losses).
PLAIN = quick("autoint", epochs=3, learning_rate=1e-2, lr_decay=0.5)


@pytest.fixture(scope="module")
def plain(processed):
    """PLAIN trained once for the module: (model, training log)."""
    return train.train_model(processed.train, processed.encoders.dims(), PLAIN)


def test_same_seed_gives_the_same_model(processed, plain):
    again = train.train_model(processed.train, processed.encoders.dims(), PLAIN)[1]
    assert [epoch["val_loss"] for epoch in again["epochs"]] == pytest.approx(
        [epoch["val_loss"] for epoch in plain[1]["epochs"]], abs=1e-6
    )


def test_training_lowers_the_loss(plain):
    losses = [epoch["loss"] for epoch in plain[1]["epochs"]]
    assert losses[-1] < losses[0]


def test_parse_units():
    assert train.parse_units("32,32") == (32, 32)
    assert train.parse_units("(64, 16)") == (64, 16)
    assert train.parse_units("") == ()
    assert train.parse_units(None) is None


def test_sampled_negatives_are_unrated_movies_with_the_real_ratings_context(processed):
    from pipeline.training.sampling import sample_unrated, training_rows

    train = processed.train
    sampled = sample_unrated(train, processed.movies, 3, "uniform", seed=0)
    assert len(sampled) == 3 * len(train)
    assert (sampled["label"] == 0).all()
    rated = set(zip(train["user_id"], train["movie_id"]))
    assert not any(pair in rated for pair in zip(sampled["user_id"], sampled["movie_id"]))
    source = train.iloc[np.repeat(np.arange(len(train)), 3)].reset_index(drop=True)
    for field in (*config.USER_FIELDS, *config.CONTEXT_FIELDS):
        assert (sampled[field].to_numpy() == source[field].to_numpy()).all()
    catalogue = processed.movies.set_index("movie_id")
    for field in config.MOVIE_FIELDS[1:]:
        assert (catalogue.loc[sampled["movie_id"], field].to_numpy() == sampled[field].to_numpy()).all()
    rows = training_rows(train, config.MODELS["autoint_sampled"], processed.movies)
    assert len(rows) == len(train) * (1 + config.MODELS["autoint_sampled"].negatives)
    # Shuffled, so that Keras' validation tail holds real ratings too.
    tail = rows.tail(len(rows) // 10)
    assert (tail["rating"] > 0).mean() > 0.15


def test_per_user_negatives_give_every_user_the_same_count_in_their_own_contexts(processed):
    from pipeline.training.sampling import sample_unrated

    train = processed.train
    per_rating = sample_unrated(train, processed.movies, 2, "uniform", seed=0).groupby("user_id").size()
    assert per_rating.nunique() > 1  # the generated users have different numbers of ratings
    sampled = sample_unrated(train, processed.movies, 2, "uniform", seed=0, per="user")
    counts = sampled.groupby("user_id").size()
    assert counts.nunique() == 1 and set(counts.index) == set(train["user_id"])
    assert counts.iloc[0] == round(2 * len(train) / train["user_id"].nunique())
    rated = set(zip(train["user_id"], train["movie_id"]))
    assert not any(pair in rated for pair in zip(sampled["user_id"], sampled["movie_id"]))
    # Each negative carries the context of one of its own user's ratings.
    contexts = set(map(tuple, train[["user_id", *config.CONTEXT_FIELDS, *config.USER_FIELDS[1:]]].to_numpy()))
    assert set(map(tuple, sampled[["user_id", *config.CONTEXT_FIELDS, *config.USER_FIELDS[1:]]].to_numpy())) <= contexts
    with pytest.raises(ValueError, match="negatives_per"):
        sample_unrated(train, processed.movies, 2, "uniform", seed=0, per="movie")


def test_popularity_sampler_draws_popular_movies_more_often(processed):
    from pipeline.training.sampling import sample_unrated

    train = processed.train
    counts = np.bincount(train["movie_id"], minlength=len(processed.movies))
    uniform = sample_unrated(train, processed.movies, 2, "uniform", seed=0)
    popular = sample_unrated(train, processed.movies, 2, "popularity", seed=0)
    weight = lambda frame: counts[frame["movie_id"]].mean()  # noqa: E731
    assert weight(popular) > 1.2 * weight(uniform)


def test_fresh_negatives_draw_new_unrated_movies_every_epoch(processed, monkeypatch):
    drawn = []
    real = sampling.sample_unrated

    def recording(*args, **kwargs):
        sampled = real(*args, **kwargs)
        drawn.append(sampled[["user_id", "movie_id"]].to_numpy())
        return sampled

    monkeypatch.setattr(sampling, "sample_unrated", recording)
    cfg = quick("autoint_sampled", epochs=2, fresh_negatives=True)
    _, history = train.train_model(processed.train, processed.encoders.dims(), cfg, catalogue=processed.movies)
    assert [epoch["epoch"] for epoch in history["epochs"]] == [1, 2]
    assert all(np.isfinite(epoch["loss"]) and np.isfinite(epoch["val_loss"]) for epoch in history["epochs"])
    assert len(drawn) == 2 and (drawn[0][:, 0] == drawn[1][:, 0]).all()  # the same ratings' users …
    assert (drawn[0][:, 1] != drawn[1][:, 1]).mean() > 0.5  # … with other movies drawn for them


@pytest.mark.parametrize("target", config.TARGETS)
def test_target_sets_the_label_of_rated_rows_and_sampled_rows_stay_zero(processed, target):
    from pipeline.training.sampling import training_rows

    cfg = dataclasses.replace(config.MODELS["autoint_sampled"], target=target)
    rows = training_rows(processed.train, cfg, processed.movies)
    rated, sampled = rows[rows["rating"] > 0], rows[rows["rating"] == 0]
    expected = {
        "liked": (rated["rating"] >= config.LIKE_THRESHOLD).astype(float),
        "rated": np.ones(len(rated)),
        "graded": rated["rating"] / config.MAX_RATING,
    }[target]
    assert np.allclose(rated["label"].to_numpy(dtype=float), np.asarray(expected, dtype=float))
    assert len(sampled) == cfg.negatives * len(processed.train) and (sampled["label"] == 0).all()
    with pytest.raises(ValueError, match="unknown target"):
        training_rows(processed.train, dataclasses.replace(cfg, target="stars"), processed.movies)


def test_lr_decay_lowers_the_learning_rate_every_epoch(plain):
    assert float(plain[0].optimizer.learning_rate.numpy()) == pytest.approx(1e-2 * 0.5**2)


def test_ema_leaves_the_model_with_slowly_moving_averaged_weights(processed, plain):
    import tensorflow as tf

    def distance_moved(cfg, model=None):
        tf.keras.utils.set_random_seed(cfg.seed)
        start = [w.numpy() for w in architecture.build_model(processed.encoders.dims(), cfg).trainable_weights]
        model = model or train.train_model(processed.train, processed.encoders.dims(), cfg)[0]
        return sum(float(np.abs(w.numpy() - s).sum()) for w, s in zip(model.trainable_weights, start))

    moved = distance_moved(PLAIN, plain[0])
    averaged = distance_moved(dataclasses.replace(PLAIN, ema_momentum=0.999))
    assert 0 < averaged < 0.5 * moved


def test_recency_weight_weighs_a_users_later_ratings_more_and_negatives_as_their_rating(processed):
    from pipeline.training.sampling import row_weights, training_rows

    cfg = dataclasses.replace(config.MODELS["autoint_sampled"], recency_weight=2.0)
    rows = training_rows(processed.train, cfg, processed.movies)
    rated = rows[rows["rating"] > 0].sort_values(["user_id", "timestamp"], kind="stable")
    first, last = rated.groupby("user_id")["weight"].first(), rated.groupby("user_id")["weight"].last()
    assert np.allclose(first, 1.0) and np.allclose(last, 3.0)
    assert (rated.groupby("user_id")["weight"].diff().dropna() >= 0).all()
    # A sampled row weighs as the rating it was drawn for (same user, same rating time).
    by_time = rated.groupby(["user_id", "timestamp"])["weight"].agg(["min", "max"])
    sampled = rows[rows["rating"] == 0]
    drawn_for = by_time.reindex(pd.MultiIndex.from_frame(sampled[["user_id", "timestamp"]]))
    weight = sampled["weight"].to_numpy()
    assert ((drawn_for["min"].to_numpy() <= weight) & (weight <= drawn_for["max"].to_numpy())).all()
    assert row_weights(training_rows(processed.train, config.MODELS["autoint_sampled"], processed.movies)) is None
