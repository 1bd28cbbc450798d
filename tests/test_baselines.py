"""Baselines on a tiny training frame, checked against counts and rates computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import config
from pipeline.evaluation import baselines
from pipeline.evaluation.metrics import rated_metrics

# movie 1: 2 of 3 positive; movie 2: 0 of 2; movie 3: 3 of 5. Global rate g = 5/10.
TRAIN = pd.DataFrame(
    {
        "user_id": [1, 2, 3, 1, 2, 1, 2, 3, 4, 5],
        "movie_id": [1, 1, 1, 2, 2, 3, 3, 3, 3, 3],
        "label": [1, 1, 0, 0, 0, 1, 0, 0, 1, 1],
    }
)


def test_popularity_counts_positive_ratings_including_zero():
    counts = baselines.popularity(TRAIN)
    assert counts.to_dict() == {1: 2, 2: 0, 3: 3}
    assert counts.index.name == "movie_id"


def test_positive_rate_default_strength_is_ten():
    rates = baselines.positive_rate(TRAIN)
    assert config.POSITIVE_RATE_PRIOR == 10
    assert rates[1] == pytest.approx((2 + 10 * 0.5) / (3 + 10))  # 7/13
    assert rates[2] == pytest.approx((0 + 10 * 0.5) / (2 + 10))  # 5/12
    assert rates[3] == pytest.approx((3 + 10 * 0.5) / (5 + 10))  # 8/15


def test_positive_rate_strength_zero_is_the_raw_rate_and_strength_shrinks_toward_global():
    assert baselines.positive_rate(TRAIN, strength=0).to_dict() == pytest.approx({1: 2 / 3, 2: 0.0, 3: 3 / 5})
    assert baselines.positive_rate(TRAIN, strength=2)[2] == pytest.approx(1 / 4)
    assert baselines.positive_rate(TRAIN, strength=1e9)[2] == pytest.approx(0.5)


def test_score_pairs_maps_movies_and_gives_unseen_ones_the_default():
    table = pd.Series([2, 0, 3], index=pd.Index([1, 2, 3], name="movie_id"))
    scores = baselines.score_pairs(table, np.array([3, 99, 1, 3]), default=-1.0)
    np.testing.assert_array_equal(scores, [3.0, -1.0, 2.0, 3.0])
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(baselines.score_pairs(table.iloc[:0], np.array([1]), 7.0), [7.0])


def test_fit_baseline_most_popular_and_positive_rate_defaults():
    users = np.array([9, 9, 9])
    movies = np.array([3, 42, 1])
    np.testing.assert_array_equal(baselines.fit_baseline("most_popular", TRAIN)(users, movies), [3.0, 0.0, 2.0])
    rates = baselines.fit_baseline("positive_rate", TRAIN)(users, movies)
    np.testing.assert_allclose(rates, [8 / 15, 0.5, 7 / 13])


def test_random_baseline_is_fixed_per_pair_whatever_the_batching():
    scorer = baselines.fit_baseline("random", TRAIN)
    users, movies = np.repeat(np.arange(1, 101), 30), np.tile(np.arange(1, 31), 100)
    scores = scorer(users, movies)
    assert scores.min() >= 0.0 and scores.max() < 1.0 and 0.45 < scores.mean() < 0.55
    np.testing.assert_array_equal(scorer(users[::-1], movies[::-1]), scores[::-1])
    np.testing.assert_array_equal(scorer(users[500:510], movies[500:510]), scores[500:510])
    assert not np.array_equal(baselines.fit_baseline("random", TRAIN, seed=1)(users, movies), scores)


def test_unknown_baseline_is_rejected():
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.fit_baseline("oracle", TRAIN)
    assert baselines.BASELINES == ("random", "most_popular", "positive_rate", "ease", "als")


def test_popularity_counts_go_through_the_metrics_without_a_logloss():
    test = pd.DataFrame({"user_id": [1, 1, 2, 2], "movie_id": [3, 2, 1, 2], "label": [1, 0, 1, 0]})
    test["score"] = baselines.fit_baseline("most_popular", TRAIN)(test["user_id"], test["movie_id"])
    result = rated_metrics(test)
    assert result["logloss"] is None
    assert result["auc"] == pytest.approx(1.0)


# Movies 0 and 1 are always liked together; movie 2 is liked alone; movie 3 is rated but never liked.
CO_LIKED = pd.DataFrame(
    {
        "user_id": [0, 0, 1, 1, 2, 2, 3, 4, 5, 5],
        "movie_id": [0, 1, 0, 1, 0, 1, 2, 2, 3, 0],
        "label": [1, 1, 1, 1, 1, 1, 1, 1, 0, 1],
    }
)


def test_ease_scorer_ranks_the_co_liked_movie_first_and_scores_unknown_codes_zero():
    score = baselines.fit_baseline("ease", CO_LIKED)
    # User 5 liked movie 0 only: movie 1 (always liked with 0) must outrank movie 2 and movie 3.
    user5 = score(np.array([5, 5, 5]), np.array([1, 2, 3]))
    assert user5[0] > user5[1] and user5[0] > user5[2]
    # User 3 liked movie 2 only, which no one liked with 0 or 1.
    assert score(np.array([3]), np.array([2]))[0] == pytest.approx(0.0, abs=1e-12)  # own movie: zero diagonal
    np.testing.assert_array_equal(score(np.array([99, 0]), np.array([0, 99])), [0.0, 0.0])


def test_ease_scorer_uses_a_given_retrieval_model_instead_of_fitting_one():
    from pipeline.retrieval import ease, retriever

    fitted = ease.fit(CO_LIKED, 6, 4, l2=1.0)
    score = baselines.fit_baseline("ease", CO_LIKED, fitted=fitted)
    liked = retriever.liked_matrix(CO_LIKED, 6, 4).toarray()
    users, movies = np.repeat(np.arange(6), 4), np.tile(np.arange(4), 6)
    np.testing.assert_allclose(score(users, movies), (liked @ fitted.weights)[users, movies], rtol=1e-6)


@pytest.mark.parametrize("chunk_users", [1, 4, 4096])
def test_ease_scorer_gives_every_pair_the_dense_score_whatever_the_chunk_of_users(chunk_users):
    """The pairs' users are scored a chunk at a time; shuffled pairs, repeated pairs and unknown codes included."""
    from pipeline.retrieval import ease, retriever

    fitted = ease.fit(CO_LIKED, 6, 4, l2=1.0)
    score = baselines.fit_baseline("ease", CO_LIKED, fitted=fitted, chunk_users=chunk_users)
    dense = retriever.liked_matrix(CO_LIKED, 6, 4).toarray() @ fitted.weights
    order = np.random.default_rng(0).permutation(48)
    users, movies = np.tile(np.repeat(np.arange(6), 4), 2)[order], np.tile(np.arange(4), 12)[order]
    np.testing.assert_allclose(score(users, movies), dense[users, movies], rtol=1e-6)
    np.testing.assert_array_equal(score(np.array([5, 99, 5]), np.array([99, 1, 1])), [0.0, 0.0, dense[5, 1]])


def test_the_ease_baseline_is_ease_even_when_the_retrieval_stage_is_als_and_the_als_one_uses_it():
    """EASE is the baseline the targets name, whatever the recommender retrieves with; the ALS row is the
    recommender's own retrieval stage alone when it is given one."""
    from pipeline.retrieval import als, ease, retriever

    settings = {"factors": 2, "regularization": 0.1, "alpha": 10.0, "iterations": 5, "seed": 0}
    fitted = als.fit(CO_LIKED, 6, 4, settings)
    users, movies = np.repeat(np.arange(6), 4), np.tile(np.arange(4), 6)
    liked = retriever.liked_matrix(CO_LIKED, 6, 4)
    ease_score = baselines.fit_baseline("ease", CO_LIKED, fitted=fitted)
    expected = liked.toarray() @ ease.ease_weights(liked)
    np.testing.assert_allclose(ease_score(users, movies), expected[users, movies], rtol=1e-5, atol=1e-6)
    als_score = baselines.fit_baseline("als", CO_LIKED, fitted=fitted)
    np.testing.assert_allclose(als_score(users, movies), fitted.scores(liked)[users, movies], rtol=1e-5, atol=1e-6)


def test_ease_is_left_out_for_a_catalogue_too_large_to_fit_it_unless_it_is_the_retrieval(monkeypatch):
    from pipeline import config

    monkeypatch.setitem(config.RETRIEVAL, "ease_max_movies", 100)
    assert baselines.evaluated(100, "als") == baselines.BASELINES
    assert baselines.evaluated(101, "als") == ("random", "most_popular", "positive_rate", "als")
    assert baselines.evaluated(101, "ease") == baselines.BASELINES
