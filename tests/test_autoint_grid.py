"""autoint_grid computes what DeepCTR's AutoInt computes: same scores, same rankings, any depth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipeline import config
from pipeline.bench.recommend_bench import plain_predict
from pipeline.ranking import autoint_grid
from pipeline.ranking.architecture import build_model
from pipeline.ranking.scorers import ModelScorer, top_n

DIMS = dict(zip(config.FIELDS, (50, 40, 10, 30, 4, 12, 1, 18, 18, 16, 2, 7, 21, 45)))


def random_model(name: str, **changes):
    """A DeepCTR AutoInt with weights drawn wide enough that attention is far from uniform."""
    model = build_model(DIMS, dataclasses.replace(config.MODELS[name], **changes))
    rng = np.random.default_rng(7)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.4, weight.shape).astype(np.float32))
    return model


def grid_inputs(n_users: int = 9, seed: int = 3):
    rng = np.random.default_rng(seed)
    side = {f: rng.integers(0, DIMS[f], n_users) for f in autoint_grid.SIDE_FIELDS}
    movies = {
        f: (np.arange(DIMS[f]) if f == "movie_id" else rng.integers(0, DIMS[f], DIMS["movie_id"]))
        for f in autoint_grid.MOVIE_FIELDS
    }
    return side, movies


def keras_grid(model, side, movies) -> np.ndarray:
    n_users, n_movies = len(side["user_id"]), len(movies["movie_id"])
    users, rows = np.divmod(np.arange(n_users * n_movies), n_movies)
    inputs = {f: side[f][users] if f in side else movies[f][rows] for f in config.FIELDS}
    return plain_predict(model, batch_size=4096)(inputs).reshape(n_users, n_movies)


@pytest.mark.parametrize(
    "name, changes",
    [
        ("autoint", {}),
        ("autoint_mlp", {}),
        ("autoint", {"att_layer_num": 1}),
        ("autoint_mlp", {"att_layer_num": 4, "dnn_hidden_units": (8, 64, 16)}),
        ("autoint", {"att_layer_num": 0, "dnn_hidden_units": (16,)}),
    ],
)
def test_grid_scores_and_ranks_like_the_keras_model(name, changes):
    model = random_model(name, **changes)
    side, movies = grid_inputs()
    fast = autoint_grid.from_model(model)(side, movies)
    plain = keras_grid(model, side, movies)
    assert fast.shape == plain.shape == (9, DIMS["movie_id"])
    assert plain.std() > 0.05  # the check is not between two constants
    np.testing.assert_allclose(fast, plain, rtol=2e-5, atol=2e-6)
    assert (np.argsort(-fast, axis=1, kind="stable") == np.argsort(-plain, axis=1, kind="stable")).all()


def test_one_side_row_scores_the_same_alone_or_among_others():
    model = random_model("autoint_mlp")
    grid = autoint_grid.from_model(model)
    side, movies = grid_inputs()
    together = grid(side, movies)
    for row in (0, 4, 8):
        alone = grid({f: v[row : row + 1] for f, v in side.items()}, movies)
        np.testing.assert_array_equal(alone[0], together[row])


def test_a_shape_the_kernel_was_not_built_for_falls_back_to_keras_with_the_same_top_n():
    model = random_model("autoint", att_head_num=1)
    with pytest.raises(autoint_grid.UnsupportedModel):
        autoint_grid.from_model(model)
    scorer = ModelScorer(model)
    assert scorer.grid is None
    side, movies = grid_inputs(n_users=4)
    users = pd.DataFrame(side)
    users["user_id"] = np.arange(4)  # top_n needs one row per user
    catalogue = pd.DataFrame(movies)
    exclude = pd.DataFrame({"user_id": [0, 1], "movie_id": [5, 6]})
    fast, plain = (top_n(fn, users, catalogue, exclude, n=7) for fn in (scorer, plain_predict(model)))
    pd.testing.assert_frame_equal(fast[["user_id", "rank", "movie_id"]], plain[["user_id", "rank", "movie_id"]])


def test_vectorised_exp_is_within_a_few_ulp_of_exp():
    x = np.concatenate([-np.geomspace(1e-8, 87.0, 4001), [0.0]]).astype(np.float32)
    fast = np.array([autoint_grid._exp_nonpositive(v, autoint_grid._POW2_NEG) for v in x], dtype=np.float64)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(fast - exact) / exact) < 4e-7
