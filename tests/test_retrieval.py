"""The retrieval stage: EASE's weights, top-K unseen candidates, saving and loading (ALS: tests/test_als.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from pipeline import config
from pipeline.retrieval import ease, retriever

# Users 0-2 like movies 0 and 1 together; users 3 and 4 like movie 2 alone; nobody likes movie 3 (user 5
# rated it, label 0); user 5 likes movie 0 only.
CO_LIKED = pd.DataFrame(
    {
        "user_id": [0, 0, 1, 1, 2, 2, 3, 4, 5, 5],
        "movie_id": [0, 1, 0, 1, 0, 1, 2, 2, 3, 0],
        "label": [1, 1, 1, 1, 1, 1, 1, 1, 0, 1],
    }
)


def test_matrices_mark_liked_and_rated_pairs_once():
    liked = retriever.liked_matrix(CO_LIKED, n_users=6, n_movies=4).toarray()
    assert liked.sum() == 9 and liked[5, 3] == 0 and liked[5, 0] == 1
    twice = pd.concat([CO_LIKED, CO_LIKED.head(1)])
    rated = retriever.interaction_matrix(twice, 6, 4).toarray()
    assert rated.max() == 1.0 and rated.sum() == 10 and rated[5, 3] == 1


def test_ease_weights_have_a_zero_diagonal_and_link_movies_liked_together():
    liked = retriever.liked_matrix(CO_LIKED, n_users=6, n_movies=4)
    weights = ease.ease_weights(liked, l2=1.0)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    assert weights[0, 1] > 0.3 and weights[1, 0] > 0.3  # co-liked movies predict each other
    assert abs(weights[0, 2]) < 0.05 and abs(weights[2, 1]) < 0.05  # never liked together
    np.testing.assert_array_equal(weights[:, 3], 0.0)  # no one liked movie 3: nothing predicts it
    # More regularisation shrinks every weight.
    assert np.abs(ease.ease_weights(liked, l2=100.0)).max() < np.abs(weights).max()


def test_ease_weights_solve_the_closed_form_by_hand():
    """B = I - P·diag(1/diag(P)) with P = (XᵀX + λI)⁻¹ has zero diagonal and minimises the ridge loss:
    for each column j, X·B[:, j] is the least-squares fit of X[:, j] from the other columns (λ-ridge)."""
    rng = np.random.default_rng(0)
    x = (rng.random((40, 6)) < 0.4).astype(np.float64)
    weights = ease.ease_weights(sparse.csr_matrix(x), l2=2.0).astype(np.float64)
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        ridge = np.linalg.solve(a.T @ a + 2.0 * np.eye(5), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], ridge, atol=1e-5)


def test_top_k_skips_seen_movies_orders_by_score_and_breaks_ties_by_code():
    weights = np.array([[0, 3, 1, 1], [2, 0, 1, 1], [0, 0, 0, 5], [0, 0, 0, 0]], np.float32)
    fitted = ease.Retrieval(weights, -weights)  # top_k reads the liked model only
    liked = sparse.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], np.float32))
    seen = sparse.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]], np.float32))
    movies, scores = fitted.top_k(liked, seen, k=2)
    # person 0: scores [_, 3, 1, 1] → 1, then the tie 2 vs 3 goes to 2.
    # person 1: scores [_, _, 2, _] (3 seen) → 2, then nothing else unseen... k is capped at 4 - 3 = 1.
    assert movies.shape == (3, 1)
    movies, scores = fitted.top_k(liked[[0, 2]], seen[[0, 2]], k=2)
    np.testing.assert_array_equal(movies, [[1, 2], [0, 1]])  # person 2 liked nothing: all zero, by code
    np.testing.assert_allclose(scores, [[3, 1], [0, 0]])


def test_fit_save_and_load_round_trip(tmp_path):
    fitted = ease.fit(CO_LIKED, 6, 4, l2=1.0)
    path = retriever.save(fitted, tmp_path / "models" / "retrieval.npz")
    loaded = retriever.load(path)
    assert loaded.kind == "ease" and isinstance(loaded, ease.Retrieval)
    np.testing.assert_array_equal(loaded.weights, fitted.weights)
    np.testing.assert_array_equal(loaded.rated_weights, fitted.rated_weights)
    # The every-rating model also links movie 3 (rated by user 5 with movie 0, not liked): the liked one cannot.
    assert fitted.rated_weights[0, 3] > 0 and fitted.weights[0, 3] == 0
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_command_fits_the_splits_training_rows(small_run, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.data.processed import load_processed

    processed = small_run / "data" / "processed"
    result = CliRunner().invoke(
        app,
        [
            "retrieval",
            "--split",
            "temporal",
            "--processed-dir",
            str(processed),
            "--models-dir",
            str(tmp_path / "models"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "EASE" in result.output
    data = load_processed(processed).split("temporal")
    expected = ease.fit(data.train, len(data.users), len(data.movies))
    loaded = retriever.load(tmp_path / "models" / "temporal" / "retrieval.npz")
    np.testing.assert_array_equal(loaded.weights, expected.weights)
    np.testing.assert_array_equal(loaded.rated_weights, expected.rated_weights)
    result = CliRunner().invoke(app, ["retrieval", "--split", "weekly", "--processed-dir", str(processed)])
    assert result.exit_code == 2 and "weekly" in result.output


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("cells", [2**24, 90])  # all 20 rows at once, or 3 rows (90 // 30 movies) per chunk
def test_top_k_never_returns_a_seen_movie_on_random_data(k, cells, monkeypatch):
    monkeypatch.setitem(config.RETRIEVAL, "scoring_cells", cells)
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(30, 30)).astype(np.float32)
    fitted = ease.Retrieval(weights, weights)
    liked = sparse.csr_matrix((rng.random((20, 30)) < 0.2).astype(np.float32))
    seen = sparse.csr_matrix(((liked.toarray() + (rng.random((20, 30)) < 0.2)) > 0).astype(np.float32))
    movies, scores = fitted.top_k(liked, seen, k)
    assert not seen.toarray()[np.arange(20)[:, None], movies].any()
    full = liked.toarray() @ fitted.weights
    full[seen.toarray() > 0] = -np.inf
    np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :k], rtol=1e-5)
    # scores_at reads the same scores, chunk by chunk.
    np.testing.assert_allclose(fitted.scores_at(liked, movies), scores, rtol=1e-6)
