"""ALS behind the retrieval interface: candidates, scores at chosen movies, fold-in, saving, and the kind rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from pipeline import config
from pipeline.retrieval import als, ease, retriever

N_USERS, N_MOVIES = 60, 24
GROUP_A, GROUP_B = np.arange(0, 12), np.arange(12, 24)
SETTINGS = {"factors": 2, "regularization": 0.1, "alpha": 10.0, "iterations": 15, "seed": 3}


def planted_rows(seed: int = 0) -> pd.DataFrame:
    """Users 0-29 like 6 movies of group A (0-11) each, users 30-59 six of group B (12-23); every user also
    rated, without liking, two movies of the other group."""
    rng = np.random.default_rng(seed)
    frames = []
    for user in range(N_USERS):
        mine, other = (GROUP_A, GROUP_B) if user < N_USERS // 2 else (GROUP_B, GROUP_A)
        liked, disliked = rng.choice(mine, 6, replace=False), rng.choice(other, 2, replace=False)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": user,
                    "movie_id": np.concatenate([liked, disliked]),
                    "label": np.r_[np.ones(6, int), np.zeros(2, int)],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return planted_rows()


@pytest.fixture(scope="module")
def fitted(rows) -> als.Retrieval:
    return als.fit(rows, N_USERS, N_MOVIES, SETTINGS)


def people(movie_lists, n_movies: int = N_MOVIES) -> sparse.csr_matrix:
    """A people × movies matrix with 1 at each person's listed movies (what a new person's liked list becomes)."""
    rows = np.repeat(np.arange(len(movie_lists)), [len(movies) for movies in movie_lists])
    return sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, np.concatenate(movie_lists))), shape=(len(movie_lists), n_movies)
    )


def test_a_group_fan_gets_the_rest_of_their_group_first(fitted, rows):
    liked = retriever.liked_matrix(rows, N_USERS, N_MOVIES)
    seen = retriever.interaction_matrix(rows, N_USERS, N_MOVIES)
    movies, _ = fitted.top_k(liked, seen, 4)
    # Each user has 6 unseen movies of their own group left; the top 4 are all of them (2 factors: the 2 groups).
    assert np.isin(movies[: N_USERS // 2], GROUP_A).all()
    assert np.isin(movies[N_USERS // 2 :], GROUP_B).all()
    # A new person naming two group-B movies is proposed group B.
    movies, _ = fitted.top_k(people([[12, 15]]), people([[12, 15]]), 5)
    assert np.isin(movies, GROUP_B).all() and not np.isin(movies, [12, 15]).any()


def test_top_k_excludes_seen_movies_and_is_ordered(fitted, rows):
    liked = retriever.liked_matrix(rows, N_USERS, N_MOVIES)
    seen = retriever.interaction_matrix(rows, N_USERS, N_MOVIES)
    movies, scores = fitted.top_k(liked, seen, 10)
    assert movies.shape == scores.shape == (N_USERS, 10) and movies.dtype == np.int64
    assert not seen.toarray()[np.arange(N_USERS)[:, None], movies].any()
    assert (np.diff(scores, axis=1) <= 0).all()
    full = fitted.scores(liked)
    full[seen.toarray() > 0] = -np.inf
    np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :10], rtol=1e-5)
    # k is capped at the fewest unseen movies of any row: user 0 has seen 8 of the 24.
    assert fitted.top_k(liked[:1], seen[:1], 100)[0].shape == (1, N_MOVIES - 8)


@pytest.mark.parametrize("cells", [2**24, 20])  # one chunk, or one row (20 // (10 movies × 2 factors)) a chunk
def test_scores_at_equal_the_full_scores_at_those_movies(fitted, rows, cells, monkeypatch):
    monkeypatch.setitem(config.RETRIEVAL, "scoring_cells", cells)
    liked = retriever.liked_matrix(rows, N_USERS, N_MOVIES)
    rated = retriever.interaction_matrix(rows, N_USERS, N_MOVIES)
    movies = np.random.default_rng(1).integers(0, N_MOVIES, (N_USERS, 10))
    at = fitted.scores_at(liked, movies)
    assert at.dtype == np.float32 and at.shape == movies.shape
    np.testing.assert_allclose(at, np.take_along_axis(fitted.scores(liked), movies, axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        fitted.rated_scores_at(rated, movies),
        np.take_along_axis(fitted.rated_scores(rated), movies, axis=1),
        rtol=1e-5,
        atol=1e-6,
    )
    # The every-rating model is a model of its own: it also links the other group's disliked movies.
    assert not np.allclose(fitted.rated_item_factors, fitted.item_factors)


def test_a_new_person_and_a_known_user_with_the_same_movies_get_the_same_scores(fitted, rows):
    liked = retriever.liked_matrix(rows, N_USERS, N_MOVIES)
    user = 7
    newcomer = people([liked[user].indices])
    np.testing.assert_array_equal(fitted.scores(newcomer), fitted.scores(liked[[user]]))
    # A row's scores do not depend on the rows scored with it, and come only from the row given:
    np.testing.assert_allclose(fitted.scores(liked)[user], fitted.scores(liked[[user]])[0], rtol=1e-5, atol=1e-6)
    assert not fitted.scores(people([np.zeros(0, int)])).any()  # nothing given → no factors, all zero
    # ... which is implicit's own fold-in, the exact least-squares solve (module docstring), by hand.
    v, c = fitted.item_factors.astype(np.float64), SETTINGS["alpha"]
    mine = liked[user].indices
    a = v.T @ v + SETTINGS["regularization"] * np.eye(SETTINGS["factors"]) + (c - 1) * v[mine].T @ v[mine]
    u = np.linalg.solve(a, c * v[mine].sum(axis=0))
    np.testing.assert_allclose(fitted.scores(newcomer)[0], v @ u, rtol=1e-4, atol=1e-5)


def test_fitting_twice_with_the_same_seed_gives_the_same_model(fitted, rows):
    again = als.fit(rows, N_USERS, N_MOVIES, SETTINGS)
    np.testing.assert_array_equal(again.item_factors, fitted.item_factors)
    other = als.fit(rows, N_USERS, N_MOVIES, {**SETTINGS, "seed": SETTINGS["seed"] + 1})
    assert not np.array_equal(other.item_factors, fitted.item_factors)


@pytest.mark.parametrize("kind", ["ease", "als"])
def test_save_and_load_round_trip_either_kind(rows, kind, tmp_path, monkeypatch):
    monkeypatch.setitem(config.RETRIEVAL, "als", SETTINGS)
    model = retriever.fit(rows, N_USERS, N_MOVIES, kind)
    path = retriever.save(model, tmp_path / "models" / "retrieval.npz")
    loaded = retriever.load(path)
    assert loaded.kind == kind and type(loaded) is type(model) and loaded.n_movies == N_MOVIES
    liked = retriever.liked_matrix(rows, N_USERS, N_MOVIES)
    rated = retriever.interaction_matrix(rows, N_USERS, N_MOVIES)
    np.testing.assert_array_equal(loaded.scores(liked), model.scores(liked))
    np.testing.assert_array_equal(loaded.rated_scores(rated), model.rated_scores(rated))
    # ALS beside EASE comes back too (an ALS model is its own).
    assert loaded.als is not None and (loaded.als is loaded) == (kind == "als")
    np.testing.assert_array_equal(loaded.als.rated_scores(rated), model.als.rated_scores(rated))
    assert [p.name for p in path.parent.iterdir()] == ["retrieval.npz"]  # no temporary file left
    np.savez(tmp_path / "other.npz", weights=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no retrieval model"):
        retriever.load(tmp_path / "other.npz")


def test_the_kind_follows_the_setting_and_else_the_catalogue_size(rows, monkeypatch):
    monkeypatch.setitem(config.RETRIEVAL, "als", SETTINGS)
    monkeypatch.setitem(config.RETRIEVAL, "kind", None)
    monkeypatch.setitem(config.RETRIEVAL, "ease_max_movies", N_MOVIES)
    assert retriever.kind_for(N_MOVIES) == "ease" and retriever.kind_for(N_MOVIES + 1) == "als"
    assert isinstance(retriever.fit(rows, N_USERS, N_MOVIES), ease.Retrieval)
    assert isinstance(retriever.fit(rows, N_USERS, N_MOVIES + 1), als.Retrieval)
    assert retriever.settings(N_MOVIES) == {"kind": "ease", "ease_l2": config.EASE_L2, "als": SETTINGS}
    assert retriever.settings(N_MOVIES + 1) == {"kind": "als", **SETTINGS}
    monkeypatch.setitem(config.RETRIEVAL, "kind", "als")
    assert retriever.kind_for(N_MOVIES) == "als" and isinstance(retriever.fit(rows, N_USERS, N_MOVIES), als.Retrieval)
    assert isinstance(retriever.fit(rows, N_USERS, N_MOVIES, kind="ease"), ease.Retrieval)  # an explicit kind wins
    monkeypatch.setitem(config.RETRIEVAL, "kind", "svd")
    with pytest.raises(ValueError, match="svd"):
        retriever.settings(N_MOVIES)


@pytest.mark.parametrize("kind", ["ease", "als"])
def test_a_liked_model_alone_scores_as_the_full_fit_s_liked_model(rows, monkeypatch, kind):
    """fit_liked (what a retrieval-alone baseline fits) skips the every-rating model, not the liked one."""
    monkeypatch.setitem(config.RETRIEVAL, "als", SETTINGS)
    alone = retriever.fit_liked(rows, N_USERS, N_MOVIES, kind)
    full = retriever.fit(rows, N_USERS, N_MOVIES, kind)
    liked = retriever.liked_matrix(rows, N_USERS, N_MOVIES)
    assert alone.kind == kind
    np.testing.assert_allclose(alone.scores(liked), full.scores(liked), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="svd"):
        retriever.fit_liked(rows, N_USERS, N_MOVIES, "svd")


def test_ease_carries_als_fitted_on_the_same_rows_unless_the_setting_says_no(rows, monkeypatch):
    monkeypatch.setitem(config.RETRIEVAL, "als", SETTINGS)
    fitted = retriever.fit(rows, N_USERS, N_MOVIES, "ease")
    alone = als.fit(rows, N_USERS, N_MOVIES)
    liked = retriever.liked_matrix(rows, N_USERS, N_MOVIES)
    assert isinstance(fitted.als, als.Retrieval)
    np.testing.assert_allclose(fitted.als.scores(liked), alone.scores(liked), rtol=1e-5, atol=1e-6)
    monkeypatch.setitem(config.RETRIEVAL, "als_beside_ease", False)
    assert retriever.fit(rows, N_USERS, N_MOVIES, "ease").als is None
    assert retriever.settings(N_MOVIES) == {"kind": "ease", "ease_l2": config.EASE_L2}
    assert retriever.fit_liked(rows, N_USERS, N_MOVIES, "ease").als is None  # a baseline needs no ALS


def test_the_command_fits_the_kind_the_setting_asks_for(small_processed, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setitem(config.RETRIEVAL, "als", SETTINGS)
    monkeypatch.setitem(config.RETRIEVAL, "kind", "als")
    models = tmp_path / "models"
    arguments = ["retrieval", "--processed-dir", str(small_processed), "--models-dir", str(models)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "ALS (factors 2" in result.output
    assert retriever.load(retriever.path("random", models)).kind == "als"
    monkeypatch.setitem(config.RETRIEVAL, "kind", "svd")
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2 and "svd" in result.output
    result = CliRunner().invoke(app, ["retrieval", "--processed-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "make preprocess" in result.output
