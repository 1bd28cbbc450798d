"""The two-stage ranker's inputs and training lists: leakage guards, history, retrieval signal, new people."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from pipeline import config
from pipeline.data import preprocess, raw_files
from pipeline.ranking import candidates, ranker_inputs, scorers
from pipeline.retrieval import ease, retriever
from pipeline.training import ranker
from tests.conftest import small_config


@pytest.fixture(scope="module")
def data(raw_dir):
    return preprocess.preprocess(*raw_files.read_raw(raw_dir))


@pytest.fixture(scope="module")
def cfg():
    return small_config("autoint_mlp_two_stage", history=6)


def test_folds_spread_every_users_rows_evenly(data):
    fold = ranker.folds_of(data.train, 3, seed=1)
    counts = pd.crosstab(data.train["user_id"], fold)
    assert list(counts.columns) == [0, 1, 2]
    assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()
    np.testing.assert_array_equal(fold, ranker.folds_of(data.train, 3, seed=1))
    assert (fold != ranker.folds_of(data.train, 3, seed=2)).any()


def test_training_lists_come_from_retrieval_models_that_never_saw_their_labels(data, cfg, monkeypatch):
    fitted_on = []
    real_fit = retriever.fit

    def recording_fit(rows, *args, **kwargs):
        fitted_on.append(set(zip(rows["user_id"], rows["movie_id"])))
        return real_fit(rows, *args, **kwargs)

    monkeypatch.setattr(retriever, "fit", recording_fit)
    cfg = dataclasses.replace(cfg, loss="binary")  # keep every list, labelled or not
    lists = ranker.training_lists(data.train, data.users, len(data.movies), cfg)
    fold = ranker.folds_of(data.train, cfg.folds, cfg.seed)
    train_pairs = set(zip(data.train["user_id"], data.train["movie_id"]))
    test_pairs = set(zip(data.test["user_id"], data.test["movie_id"]))
    assert len(fitted_on) == cfg.folds
    per_fold = np.array_split(
        np.arange(len(lists)),
        np.cumsum([len(np.unique(data.train["user_id"][fold != f])) for f in range(cfg.folds)])[:-1],
    )
    for held_out, rows in enumerate(per_fold):
        labelled = data.train[fold == held_out]
        labelled_pairs = set(zip(labelled["user_id"], labelled["movie_id"]))
        assert not fitted_on[held_out] & labelled_pairs  # its retrieval model never saw the fold's rows
        assert fitted_on[held_out] | labelled_pairs == train_pairs  # and only training rows were used
        assert not fitted_on[held_out] & test_pairs
        part = lists.take(rows)
        liked = set(
            zip(labelled.loc[labelled["label"] == 1, "user_id"], labelled.loc[labelled["label"] == 1, "movie_id"])
        )
        for owner, movies, labels, history in zip(part.owner, part.movies, part.labels, part.history):
            assert {(owner, m) for m, y in zip(movies, labels) if y} <= liked
            assert {(owner, m) for m, y in zip(movies, labels) if not y}.isdisjoint(liked)
            # A candidate is never a movie of the list's own history, nor an input row of its retrieval model.
            assert not set(movies) & set(history[history > 0] - 1)
            assert not {(owner, m) for m in movies} & fitted_on[held_out]


def test_listwise_training_keeps_only_lists_with_a_liked_candidate(data, cfg):
    lists = ranker.training_lists(data.train, data.users, len(data.movies), cfg)
    assert lists.labels.shape == lists.movies.shape and (lists.labels.sum(axis=1) > 0).all()


def test_serving_lists_read_only_the_rows_given_and_exclude_them(data, cfg):
    fitted = ease.fit(data.train, len(data.users), len(data.movies))
    lists = candidates.user_lists(fitted, data.train, data.users, cfg)
    for owner, movies, history in zip(lists.owner[:50], lists.movies[:50], lists.history[:50]):
        mine = data.train[data.train["user_id"] == owner]
        assert not set(movies) & set(mine["movie_id"])
        liked_tests = set(data.test.loc[(data.test["user_id"] == owner) & (data.test["label"] == 1), "movie_id"])
        assert set(history[history > 0] - 1) <= set(mine.loc[mine["label"] == 1, "movie_id"])
        assert not set(history[history > 0] - 1) & liked_tests
    latest = data.train.sort_values("timestamp").groupby("user_id").tail(1).set_index("user_id")
    owner = lists.owner[3]
    np.testing.assert_array_equal(lists.context[3] - 1, latest.loc[owner, list(config.CONTEXT_FIELDS)].to_numpy())
    fields = data.users.set_index("user_id").loc[owner, list(config.USER_FIELDS[1:])].to_numpy()
    np.testing.assert_array_equal(lists.profile[3] - 1, [owner, *fields])


def test_the_signals_retrieval_cannot_see_come_from_the_disliked_and_all_rated_movies(data, cfg):
    fitted = ease.fit(data.train, len(data.users), len(data.movies))
    lists = candidates.user_lists(fitted, data.train, data.users, cfg)
    owner, proposed = lists.owner[0], lists.movies[0]
    mine = data.train[data.train["user_id"] == owner]
    liked, disliked = (
        mine.loc[mine["label"] == 1, "movie_id"].to_numpy(),
        mine.loc[mine["label"] == 0, "movie_id"].to_numpy(),
    )
    np.testing.assert_allclose(lists.scores[0], fitted.weights[liked].sum(axis=0)[proposed], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lists.disliked[0], fitted.weights[disliked].sum(axis=0)[proposed], rtol=1e-5, atol=1e-6)
    everything = mine["movie_id"].to_numpy()
    np.testing.assert_allclose(
        lists.rated[0], fitted.rated_weights[everything].sum(axis=0)[proposed], rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(fitted.rated_weights, fitted.weights)  # a model of its own
    latest = (
        mine[mine["label"] == 1].sort_values("timestamp", kind="stable")["movie_id"].to_numpy()[-cfg.recent_liked :]
    )
    np.testing.assert_allclose(lists.recent[0], fitted.weights[latest].sum(axis=0)[proposed], rtol=1e-5, atol=1e-6)


def test_lists_carry_the_scores_of_the_als_beside_ease_and_the_ranker_reads_them_when_set(data, cfg):
    fitted = retriever.fit(data.train, len(data.users), len(data.movies))
    assert fitted.kind == "ease" and fitted.als is not None
    lists = candidates.user_lists(fitted, data.train, data.users, cfg)
    n_users, n_movies = len(data.users), len(data.movies)
    liked = retriever.liked_matrix(data.train, n_users, n_movies)[lists.owner]
    rated = retriever.interaction_matrix(data.train, n_users, n_movies)[lists.owner]
    # Against ALS's whole-catalogue scores (a matrix product, not scores_at's K dot products per row).
    for got, whole in (
        (lists.als_scores, fitted.als.scores(liked)),
        (lists.als_rated_from_liked, fitted.als.rated_scores(liked)),
        (lists.als_rated, fitted.als.rated_scores(rated)),
    ):
        np.testing.assert_allclose(got, np.take_along_axis(whole, lists.movies, axis=1), rtol=1e-4, atol=1e-5)
    assert not np.allclose(lists.als_rated, lists.als_rated_from_liked)  # the disliked movies count
    movies = ranker_inputs.movie_table(data.movies)
    inputs = ranker_inputs.list_inputs(lists, movies, cfg)
    np.testing.assert_allclose(
        inputs["als_score"].reshape(lists.movies.shape), ranker_inputs.standardized(lists.als_scores), rtol=1e-6
    )
    without = ranker_inputs.list_inputs(lists, movies, dataclasses.replace(cfg, als_scores=False))
    assert "als_score" not in without and "als_rated_score" not in without
    bare = candidates.user_lists(ease.fit(data.train, n_users, n_movies), data.train, data.users, cfg)
    assert bare.als_scores is None
    with pytest.raises(ValueError, match="no als_score"):
        ranker_inputs.list_inputs(bare, movies, cfg)


def test_an_als_retrieval_gives_its_own_scores_as_the_als_fields(data, cfg, monkeypatch):
    monkeypatch.setitem(config.RETRIEVAL, "als", {**config.RETRIEVAL["als"], "factors": 8, "iterations": 3})
    fitted = retriever.fit(data.train, len(data.users), len(data.movies), "als")
    lists = candidates.user_lists(fitted, data.train, data.users, cfg)
    np.testing.assert_array_equal(lists.als_scores, lists.scores)
    np.testing.assert_array_equal(lists.als_rated_from_liked, lists.rated_from_liked)
    np.testing.assert_array_equal(lists.als_rated, lists.rated)


def test_anonymized_lists_hide_who_the_user_is_and_some_look_like_new_people(data, cfg):
    fitted = retriever.fit(data.train, len(data.users), len(data.movies))
    lists = candidates.user_lists(fitted, data.train, data.users, cfg)
    out = ranker.anonymized(
        lists, dataclasses.replace(cfg, anonymous_share=0.6, newcomer_share=0.5), np.random.default_rng(0)
    )
    anonymous = out.profile[:, 0] == 0
    assert 0.45 < anonymous.mean() < 0.75 and (lists.profile[:, 0] > 0).all()
    assert (out.profile[anonymous, config.USER_FIELDS.index("zip")] == 0).all()
    newcomer = anonymous & (out.disliked == 0).all(axis=1) & (lists.disliked != 0).any(axis=1)
    assert 0.3 < newcomer.sum() / anonymous.sum() < 0.7
    assert (out.rated_from_disliked[newcomer] == 0).all()
    np.testing.assert_array_equal(out.rated[newcomer], lists.rated_from_liked[newcomer])
    # ALS's every-rating score of a new-person-shaped list is folded in from the liked movies alone.
    np.testing.assert_array_equal(out.als_rated[newcomer], lists.als_rated_from_liked[newcomer])
    np.testing.assert_array_equal(out.als_rated[~newcomer], lists.als_rated[~newcomer])
    assert not np.allclose(lists.als_rated[newcomer], lists.als_rated_from_liked[newcomer])
    silent = out.profile[:, config.USER_FIELDS.index("age")] == 0
    assert not (silent & ~anonymous).any() and 0.2 < silent.sum() / newcomer.sum() < 0.8
    np.testing.assert_array_equal(out.profile[~anonymous], lists.profile[~anonymous])
    np.testing.assert_array_equal(out.disliked[~anonymous], lists.disliked[~anonymous])
    assert ranker.anonymized(lists, dataclasses.replace(cfg, anonymous_share=0.0), np.random.default_rng(0)) is lists


def test_a_new_persons_list_excludes_their_movies_and_holds_them_as_history(data, cfg):
    fitted = ease.fit(data.train, len(data.users), len(data.movies))
    liked = [np.array([4, 9, 2]), np.arange(20)]
    lists = candidates.person_lists(fitted, liked, np.zeros((2, 5), np.int64), np.ones((2, 3), np.int64), cfg)
    assert lists.movies.shape == (2, cfg.candidates)
    assert not set(lists.movies[0]) & {4, 9, 2} and not set(lists.movies[1]) & set(range(20))
    np.testing.assert_array_equal(lists.history[0], [0, 0, 0, 5, 10, 3])  # oldest first, right-aligned
    np.testing.assert_array_equal(lists.history[1], np.arange(14, 20) + 1)  # the latest six
    assert (lists.disliked == 0).all() and (lists.rated_from_disliked == 0).all() and (lists.owner == -1).all()
    np.testing.assert_allclose(
        lists.rated[0], fitted.rated_weights[[4, 9, 2]].sum(axis=0)[lists.movies[0]], rtol=1e-5, atol=1e-6
    )
    # The recent score reads only the latest recent_liked of the second person's 20 movies.
    latest = np.arange(20 - cfg.recent_liked, 20)
    np.testing.assert_allclose(
        lists.recent[1], fitted.weights[latest].sum(axis=0)[lists.movies[1]], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("score_buckets", [False, True])
def test_the_input_pipeline_gives_the_same_rows_as_the_scoring_inputs(data, cfg, score_buckets):
    tf = pytest.importorskip("tensorflow")
    cfg = dataclasses.replace(cfg, batch_size=7 * cfg.candidates, score_buckets=score_buckets)
    fitted = retriever.fit(data.train, len(data.users), len(data.movies))
    lists = candidates.user_lists(fitted, data.train, data.users, cfg).take(slice(0, 7))
    lists = dataclasses.replace(lists, labels=np.zeros(lists.movies.shape, np.float32))
    movies = ranker_inputs.movie_table(data.movies)
    expected = ranker_inputs.list_inputs(lists, movies, cfg)
    assert ("rated_score_bucket" in expected) == score_buckets and "als_rated_score" in expected
    batches = list(ranker.list_dataset(lists, movies, cfg, seed=0))
    assert len(batches) == 1
    x, y = batches[0]
    order = np.argsort(np.asarray(x["user_id"]).reshape(7, -1)[:, 0], kind="stable")  # the batch is shuffled
    by_owner = np.argsort(lists.profile[:, 0], kind="stable")
    for name, values in expected.items():
        got = np.asarray(x[name]).reshape(7, cfg.candidates, -1)[order]
        want = np.asarray(values).reshape(7, cfg.candidates, -1)[by_owner]
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
    assert tf.reduce_sum(y).numpy() == 0


def test_listwise_loss_is_the_softmax_cross_entropy_of_each_list_by_hand():
    tf = pytest.importorskip("tensorflow")
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [1.0, 2.0, 3.0]], np.float32)
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], np.float32)  # the third list has no liked movie

    def log_softmax(row, i):
        return row[i] - math.log(sum(math.exp(v) for v in row))

    first = -log_softmax(logits[0], 0)
    second = -(log_softmax(logits[1], 0) + log_softmax(logits[1], 1)) / 2
    loss = ranker.listwise_loss(3)(tf.constant(labels.reshape(-1, 1)), tf.constant(logits.reshape(-1, 1)))
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-6)


def test_scores_are_bucketed_by_half_standard_deviations():
    z = np.array([[-9.0, -0.26, -0.25, 0.0, 0.49, 0.5, 3.99, 9.0]])
    np.testing.assert_array_equal(ranker_inputs.bucketed(z), [[0, 7, 7, 8, 8, 9, 15, 16]])


def test_ranked_orders_by_score_and_keeps_retrieval_order_on_ties():
    lists = candidates.CandidateLists(
        owner=np.array([0]),
        profile=np.zeros((1, 5)),
        context=np.zeros((1, 3)),
        history=np.zeros((1, 0)),
        movies=np.array([[7, 3, 9, 1]]),
        scores=np.zeros((1, 4)),
        disliked=np.zeros((1, 4)),
        rated_from_liked=np.zeros((1, 4)),
        rated_from_disliked=np.zeros((1, 4)),
    )
    movies, scores = scorers.ranked(lists, np.array([[0.1, 0.5, 0.5, 0.2]]), 3)
    np.testing.assert_array_equal(movies, [[3, 9, 1]])
    np.testing.assert_allclose(scores, [[0.5, 0.5, 0.2]])


def test_history_shares_movie_ids_embedding_and_codes_start_at_one(data, cfg):
    from pipeline.ranking import architecture

    model = architecture.build_model(data.encoders.dims(), cfg)
    assert [tensor.name.split(":")[0] for tensor in model.inputs] == [
        *config.FIELDS,
        "history",
        "retrieval_rank",
        "retrieval_score",
        "disliked_score",
        "rated_score",
        "recent_score",
        "als_score",
        "als_rated_score",
    ]
    names = [layer.name for layer in model.layers]
    # One table serves both movie_id and history; DeepCTR names it after the varlen field and masks index 0.
    assert "sparse_emb_movie_id" not in names
    table = model.get_layer("sparse_seq_emb_history")
    assert table.input_dim == data.encoders.dims()["movie_id"] + 1 and table.mask_zero


def test_time_folds_label_each_users_later_rows_from_a_model_of_the_earlier_ones(data):
    cfg = small_config("autoint_two_stage", fold_scheme="time", folds=2)
    pairs = list(ranker.fold_pairs(data.train, cfg))
    assert len(pairs) == 2
    for inputs, labels in pairs:
        latest_input = inputs.groupby("user_id")["timestamp"].max()
        first_label = labels.groupby("user_id")["timestamp"].min()
        shared = first_label.index.intersection(latest_input.index)
        assert (first_label[shared] >= latest_input[shared]).all()
        assert not set(zip(inputs["user_id"], inputs["movie_id"])) & set(zip(labels["user_id"], labels["movie_id"]))
    # The second fold goes back in time: its rows are all inputs of the first.
    assert len(pairs[1][0]) + len(pairs[1][1]) == len(pairs[0][0])
    with pytest.raises(ValueError, match="fold scheme"):
        next(ranker.fold_pairs(data.train, dataclasses.replace(cfg, fold_scheme="weekly")))
