"""New people: held-out users never reach training, each is given their first k liked movies by time, and a new
person's list is the ranker's order blended with popularity by how many movies they named."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipeline import config, config_evaluation
from pipeline.data import preprocess, raw_files
from pipeline.evaluation import newcomers
from pipeline.ranking import candidates, newcomer_lists


@pytest.fixture(scope="module")
def data(raw_dir):
    return preprocess.preprocess(*raw_files.read_raw(raw_dir))


def test_test_and_validation_newcomers_are_disjoint_and_never_reach_training(data):
    test, validation = newcomers.held_out_users(len(data.users))
    assert len(test) == round(0.1 * len(data.users)) and len(validation) == round(0.1 * len(data.users))
    assert not set(test) & set(validation)
    train = newcomers.training_rows(data, np.concatenate([test, validation]))
    assert not set(train["user_id"]) & (set(test) | set(validation))
    others = data.train[~data.train["user_id"].isin(np.concatenate([test, validation]))]
    assert len(train) == len(others) > 0


def test_each_newcomer_is_given_their_first_k_liked_movies_and_asked_for_the_later_ones(data):
    test, _ = newcomers.held_out_users(len(data.users))
    liked = newcomers.liked_in_order(data, test)
    ratings = pd.concat([data.train, data.test])
    at = {k: newcomers.given_first(liked, k, most=5) for k in (1, 3, 5)}
    # The same people at every k: those with more than `most` liked movies.
    assert all(np.array_equal(at[1].users, at[k].users) for k in at) and len(at[1].users) > 3
    for k, held in at.items():
        for user, given, context in zip(held.users[:8], held.given, held.context):
            mine = ratings[(ratings["user_id"] == user) & (ratings["label"] == 1)].sort_values(
                ["timestamp", "movie_id"], kind="stable"
            )
            assert len(mine) > 5
            np.testing.assert_array_equal(given, mine["movie_id"].to_numpy()[:k])
            np.testing.assert_array_equal(context, mine[list(config.CONTEXT_FIELDS)].to_numpy()[k - 1])
            relevant = held.relevant[held.relevant["user_id"] == user]["movie_id"]
            assert sorted(relevant) == sorted(mine["movie_id"].to_numpy()[k:])


def test_popularity_counts_liked_ratings_by_gender_and_age_with_any_as_zero(data):
    liked = data.train[data.train["label"] == 1]
    popularity = newcomer_lists.Popularity.of(liked, data.users, len(data.movies))
    groups = liked[["user_id", "movie_id"]].merge(data.users[["user_id", "gender", "age"]], on="user_id")
    counted = groups.groupby(["gender", "age", "movie_id"]).size()
    for (gender, age, movie), count in counted.sample(20, random_state=0).items():
        assert popularity.likes[gender + 1, age + 1, movie] == count
    overall = liked["movie_id"].value_counts()
    np.testing.assert_array_equal(popularity.likes[0, 0][overall.index.to_numpy()], overall.to_numpy())
    women = groups[groups["gender"] == 0]["movie_id"].value_counts()
    np.testing.assert_array_equal(popularity.likes[1, 0][women.index.to_numpy()], women.to_numpy())
    # The prior of a person of unknown gender and age is everyone's popularity (twice, as a log).
    unknown = popularity.prior(np.zeros((1, len(config.USER_FIELDS)), np.int64))[0]
    np.testing.assert_allclose(unknown, 2 * np.log1p(popularity.likes[0, 0]), rtol=1e-6)


def test_settings_step_by_liked_movies_named():
    table = {
        1: {"popular": 20, "weight": 4.0, "retrieval": 0.0},
        3: {"popular": 10, "weight": 2.0, "retrieval": 0.0},
        10: {"popular": 0, "weight": 0.5, "retrieval": 1.0},
    }
    popular, weight, retrieval = newcomer_lists.settings_for([0, 1, 2, 3, 9, 12], table)
    np.testing.assert_array_equal(popular, [20, 20, 20, 10, 10, 0])
    np.testing.assert_array_equal(weight, [4.0, 4.0, 4.0, 2.0, 2.0, 0.5])
    np.testing.assert_array_equal(retrieval, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0])


def test_blend_reorders_only_by_its_weight():
    ranker = np.array([[0.9, 0.6, 0.3, 0.1]], np.float32)
    prior = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(newcomer_lists.blended(ranker, prior, 0.0), ranker)
    order = lambda w: np.argsort(-newcomer_lists.blended(ranker, prior, w)[0]).tolist()  # noqa: E731
    assert order(0.01) == [0, 1, 2, 3]  # a small weight keeps the ranker's order
    assert order(100.0) == [3, 2, 1, 0]  # a large one is popularity's
    two = newcomer_lists.blended(np.vstack([ranker, ranker]), np.vstack([prior, prior]), np.array([0.0, 100.0]))
    np.testing.assert_array_equal(two[0], ranker[0])
    assert np.argsort(-two[1]).tolist() == [3, 2, 1, 0]


def test_retrieval_weight_pulls_the_order_towards_retrievals_and_adds_to_the_popularity_term():
    ranker = np.array([[0.9, 0.6, 0.3, 0.1]], np.float32)
    prior = np.zeros((1, 4))
    retrieval = np.array([[0.1, 0.2, 0.5, 0.4]])
    order = lambda r: np.argsort(-newcomer_lists.blended(ranker, prior, 0.0, retrieval, r)[0]).tolist()  # noqa: E731
    assert order(0.0) == [0, 1, 2, 3]  # no retrieval weight: the ranker's own scores, unchanged
    np.testing.assert_array_equal(newcomer_lists.blended(ranker, prior, 0.0, retrieval, 0.0), ranker)
    assert order(100.0) == [2, 3, 1, 0]  # a large one: retrieval's order
    # Both terms at once are the sum of their z-scores on top of the ranker's logit's.
    logits = np.log(ranker / (1 - ranker)).astype(np.float64)
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    prior = np.array([[4.0, 1.0, 3.0, 2.0]])
    expected = z(logits[0]) + 2.0 * z(prior[0]) + 0.5 * z(retrieval[0])
    np.testing.assert_allclose(newcomer_lists.blended(ranker, prior, 2.0, retrieval, 0.5)[0], expected, rtol=1e-5)


def test_included_movies_join_the_candidates_in_place_of_the_lowest(data):
    from pipeline.retrieval import retriever

    fitted = retriever.fit(data.train, len(data.users), len(data.movies))
    cfg = dataclasses.replace(config.MODELS["autoint_mlp_two_stage"], candidates=20)
    liked = [np.array([0, 1, 2]), np.array([5])]
    profile, context = np.zeros((2, 5), np.int64), np.ones((2, 3), np.int64)
    plain = candidates.person_lists(fitted, liked, profile, context, cfg)
    # The last of the plain lists' candidates and some far down the catalogue's order.
    extra = [np.array([plain.movies[0, -1], *np.setdiff1d(np.arange(60, 64), plain.movies[0])[:3]]), np.array([], int)]
    mixed = candidates.person_lists(fitted, liked, profile, context, cfg, include=extra)
    assert set(extra[0]) <= set(mixed.movies[0]) and mixed.movies.shape == plain.movies.shape
    kept = [movie for movie in plain.movies[0] if movie not in set(extra[0])][: 20 - len(extra[0])]
    assert set(mixed.movies[0]) == set(kept) | set(extra[0])
    assert np.all(np.diff(mixed.scores[0]) <= 0)  # in retrieval order again
    scores = fitted.scores(candidates.people_matrix(liked[:1], fitted.n_movies))[0]
    np.testing.assert_allclose(mixed.scores[0], scores[mixed.movies[0]], rtol=1e-5)
    np.testing.assert_array_equal(mixed.movies[1], plain.movies[1])  # nothing to include: unchanged


def test_newcomer_curve_trains_once_without_the_held_out_users_and_scores_every_k(data, tmp_path, monkeypatch):
    from tests.conftest import small_config

    # One self-attention layer (the product's has three): this test is about holding out and scoring new people.
    monkeypatch.setitem(config.MODELS, "autoint_mlp_two_stage", small_config("autoint_mlp_two_stage", att_layer_num=1))
    monkeypatch.setitem(config_evaluation.NEWCOMERS, "given", (1, 3))
    monkeypatch.setitem(config_evaluation.NEWCOMERS, "weights", (0.0, 1.0))
    monkeypatch.setitem(config_evaluation.NEWCOMERS, "popular", (0, 5))
    monkeypatch.setitem(config_evaluation.NEWCOMERS, "retrieval_weights", (0.0, 2.0))
    served = {1: {"popular": 5, "weight": 1000.0, "retrieval": 0.0}, 3: {"popular": 0, "weight": 0.0, "retrieval": 0.0}}
    monkeypatch.setattr(config, "NEWCOMER_LISTS", served)
    said = []
    result = newcomers.evaluate_newcomers(data, tmp_path, echo=said.append)
    assert any("training retrieval" in line for line in said)
    assert (tmp_path / "newcomers" / "autoint_mlp_two_stage.keras").is_file()
    assert (tmp_path / "newcomers" / "retrieval.npz").is_file()
    scorer_names = {
        "most_popular",
        "ease",
        "group_popular",
        "autoint_mlp_two_stage, liked movies only",
        "autoint_mlp_two_stage, + gender, age, occupation",
        "served",
    }
    assert set(result["test"]) == {"1", "3"} and set(result["validation"]) == {"1", "3"}
    test_users, _ = newcomers.held_out_users(len(data.users))
    expected = newcomers.given_first(newcomers.liked_in_order(data, test_users), 1, most=3).users
    for at in result["test"].values():
        assert set(at) == scorer_names | {"users"} and at["users"] == len(expected)
        assert all(at[name]["users"] == len(expected) for name in scorer_names)
    # With no popular candidates and weight 0 the served list is the ranker's with demographics; with the five
    # most popular of their group in and an overwhelming weight, it is that group's most popular.
    with_demographics = "autoint_mlp_two_stage, + gender, age, occupation"
    assert result["test"]["3"]["served"] == result["test"]["3"][with_demographics]
    for validation in result["validation"].values():
        assert set(validation["settings"]) == {
            f"popular {p}, weight {w:g}, retrieval {r:g}" for p in (0, 5) for w in (0.0, 1.0) for r in (0.0, 2.0)
        }
        assert validation["chosen"] in validation["settings"] and set(validation["baselines"]) == {
            "most_popular",
            "ease",
        }
    assert set(result["chosen_on_validation"]) == {"1", "3"}
    assert result["served"] == {str(k): entry for k, entry in served.items()}
    # Served directly: one movie named → its group's five most popular unseen movies first, then the ranker's
    # candidates by popularity (the weight overwhelms the ranker); three named → the ranker's own order.
    train = newcomers.training_rows(data, np.concatenate(newcomers.held_out_users(len(data.users))))
    two_stage = newcomers.trained_models(data, train, tmp_path, echo=said.append)
    popularity = newcomer_lists.Popularity.of(train[train["label"] == 1], data.users, len(data.movies))
    profile = newcomers.profiles(data, expected[:4], demographics=True)
    one = [np.array([movie]) for movie in (0, 3, 7, 11)]
    movies, _ = newcomer_lists.top_n(two_stage, popularity, one, profile, np.ones((4, 3), np.int64), 10, served)
    first = newcomer_lists.popular_unseen(popularity.prior(profile), one, np.full(4, 5))
    np.testing.assert_array_equal(movies[:, :5], np.stack(first))
    three = [np.array([0, 3, 7])]
    movies, scores = newcomer_lists.top_n(two_stage, popularity, three, profile[:1], np.ones((1, 3), np.int64), 10)
    lists = candidates.person_lists(two_stage.retrieval, three, profile[:1], np.ones((1, 3), np.int64), two_stage.cfg)
    plain = two_stage.top_n(lists, 10)
    np.testing.assert_array_equal(movies, plain[0])
    np.testing.assert_allclose(scores, plain[1])
    # A second run loads the saved models instead of training again, and scores the same.
    said.clear()
    again = newcomers.evaluate_newcomers(data, tmp_path, echo=said.append)
    assert not any("training retrieval" in line for line in said)
    assert again["test"] == result["test"]
    # Other settings are not today's models: they are trained again.
    changed = dataclasses.replace(config.MODELS["autoint_mlp_two_stage"], seed=7)
    monkeypatch.setitem(config.MODELS, "autoint_mlp_two_stage", changed)
    said.clear()
    newcomers.evaluate_newcomers(data, tmp_path, echo=said.append)
    assert any("training retrieval" in line for line in said)
