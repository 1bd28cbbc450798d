"""New people: held-out users never reach training; they are given their first liked movies by time."""

import numpy as np
import pandas as pd
import pytest

from pipeline import config
from pipeline.data import preprocess
from pipeline.evaluation import newcomers


@pytest.fixture(scope="module")
def data(raw_dir):
    return preprocess.preprocess(*preprocess.read_raw(raw_dir))


def test_held_out_users_never_reach_training_and_are_given_their_first_liked_movies(data):
    train, held = newcomers.hold_out(data, share=0.2, given=3)
    assert not set(train["user_id"]) & set(held.users)
    assert set(train["user_id"]) | set(held.users) <= set(data.train["user_id"]) | set(data.test["user_id"])
    ratings = pd.concat([data.train, data.test])
    for user, given, context in zip(held.users[:10], held.given, held.context):
        liked = ratings[(ratings["user_id"] == user) & (ratings["label"] == 1)].sort_values(
            ["timestamp", "movie_id"], kind="stable"
        )
        np.testing.assert_array_equal(given, liked["movie_id"].to_numpy()[:3])
        np.testing.assert_array_equal(context, liked[list(config.CONTEXT_FIELDS)].to_numpy()[2])
        relevant = held.relevant[held.relevant["user_id"] == user]["movie_id"]
        assert set(relevant) == set(liked["movie_id"].to_numpy()[3:]) and len(relevant) > 0


def test_new_user_evaluation_scores_the_ranker_and_both_baselines(data, monkeypatch):
    from tests.conftest import small_config

    # One self-attention layer (the product's has three): this test is about holding out and scoring new
    # users, and the smaller model trains in a fraction of the time.
    cfg = small_config("autoint_mlp_two_stage", att_layer_num=1)
    monkeypatch.setitem(config.MODELS, "autoint_mlp_two_stage", cfg)
    monkeypatch.setattr(config, "NEW_USER_SHARE", 0.2)
    monkeypatch.setattr(config, "NEW_USER_GIVEN", 3)
    result = newcomers.evaluate_new_users(data, echo=lambda line: None)
    assert result["baselines"] == ["ease", "most_popular"] and result["given"] == 3
    assert set(result["scorers"]) == {
        "ease",
        "most_popular",
        "autoint_mlp_two_stage, 3 movies",
        "autoint_mlp_two_stage, 3 movies + gender, age, occupation",
    }
    _, held = newcomers.hold_out(data, 0.2, 3)
    assert result["users"] == len(held.users) == held.relevant["user_id"].nunique()
    for scores in result["scorers"].values():
        assert 0 <= scores["recall@10"] <= 1 and scores["users"] == result["users"]
