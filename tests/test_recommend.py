import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import config, recommend
from pipeline.cli import app
from pipeline.scoring import ModelScorer, top_n
from pipeline.train import load_model


@pytest.fixture(scope="module")
def rec(small_run):
    return recommend.load_recommender(small_run / "data" / "processed", small_run / "artifacts" / "models")


def run(small_run, *args):
    paths = ["--processed-dir", str(small_run / "data" / "processed"), "--models-dir", str(small_run / "artifacts" / "models")]
    return CliRunner().invoke(app, ["recommend", *args, *paths])


def test_profile_uses_readable_labels(rec, raw_dir):
    line = (raw_dir / "users.dat").read_text(encoding="latin-1").splitlines()[2]
    user_id, gender, age, occupation, zip_code = line.split("::")
    who = recommend.profile(rec, int(user_id))
    assert who == {"user_id": int(user_id), "gender": recommend.GENDER_LABELS[gender],
                   "age": recommend.AGE_LABELS[int(age)], "occupation": recommend.OCCUPATION_LABELS[int(occupation)],
                   "zip": zip_code}


def test_liked_history_is_every_rating_of_four_or_more_newest_first(rec, raw_dir):
    ratings = pd.read_csv(raw_dir / "ratings.dat", sep="::", engine="python", names=["u", "m", "r", "t"])
    mine = ratings[(ratings["u"] == 5) & (ratings["r"] >= 4)]
    history = recommend.liked_history(rec, 5)
    assert sorted(history["movie_id"]) == sorted(mine["m"])
    assert list(history["date"]) == sorted(history["date"], reverse=True)
    assert (history["rating"] >= 4).all() and history["title"].notna().all()


def test_recommendations_exclude_every_rated_movie(rec, raw_dir):
    ratings = pd.read_csv(raw_dir / "ratings.dat", sep="::", engine="python", names=["u", "m", "r", "t"])
    top = recommend.recommend(rec, 7, "autoint", n=10)
    assert list(top["rank"]) == list(range(1, 11))
    assert not set(top["movie_id"]) & set(ratings.loc[ratings["u"] == 7, "m"])
    assert top["score"].is_monotonic_decreasing
    assert set(top.columns) == {"rank", "movie_id", "title", "genres", "score"}


def test_seed_and_ranking_modes_use_different_models(rec):
    seed = recommend.recommend(rec, 7, "autoint", n=5, mode="seed")
    ranking = recommend.recommend(rec, 7, "autoint", n=5, mode="ranking")
    assert not np.allclose(seed["score"].to_numpy(), ranking["score"].to_numpy())


def test_context_changes_with_year_and_month(rec):
    years = recommend.valid_years(rec)
    a = recommend.recommend(rec, 7, "autoint", year=years[0], month=1, n=20, mode="seed")
    b = recommend.recommend(rec, 7, "autoint", year=years[-1], month=12, n=20, mode="seed")
    assert not np.allclose(a["score"].to_numpy(), b["score"].to_numpy())


def test_fast_path_ranks_exactly_like_plain_predict(rec, small_run):
    model = load_model(config.model_path("autoint_ranking", "random", small_run / "artifacts" / "models"))
    plain = lambda inputs: model.predict({f: inputs[f] for f in config.FIELDS}, batch_size=4096, verbose=0)[:, 0]  # noqa: E731
    users = rec.data.users.head(40).assign(rating_year=0, rating_month=3, rating_decade=0)
    fast = top_n(ModelScorer(model), users, rec.data.movies, rec.ratings[["user_id", "movie_id"]], n=10)
    slow = top_n(plain, users, rec.data.movies, rec.ratings[["user_id", "movie_id"]], n=10)
    assert (fast[["user_id", "rank", "movie_id"]].to_numpy() == slow[["user_id", "rank", "movie_id"]].to_numpy()).all()
    np.testing.assert_allclose(fast["score"], slow["score"], rtol=1e-5)


def test_recommend_all_covers_every_user(rec):
    top = recommend.recommend_all(rec, "autoint_mlp", n=10, progress=False)
    assert len(top) == 10 * len(rec.data.users)
    assert top.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 11))).all()


def test_command_prints_profile_history_and_both_lists(small_run):
    result = run(small_run, "--user", "3", "--model", "both", "--n", "5")
    assert result.exit_code == 0, result.output
    assert "user 3:" in result.output and "liked history" in result.output
    assert "autoint_mlp" in result.output and "side by side" in result.output


def test_json_output(small_run):
    result = run(small_run, "--user", "3", "--model", "autoint", "--n", "4", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["profile"]["user_id"] == 3 and len(out["recommendations"]["autoint"]) == 4


@pytest.mark.parametrize("args, message", [
    (["--user", "abc"], "whole number"),
    (["--user", "99999"], "unknown user 99999"),
    (["--user", "3", "--month", "13"], "month must be between 1 and 12"),
    (["--user", "3", "--year", "1999"], "valid years: 2000"),
    (["--user", "3", "--n", "0"], "N must be at least 1"),
    (["--user", "3", "--model", "deepfm"], "unknown model"),
])
def test_bad_input_is_one_line_and_exit_code_2(small_run, args, message):
    result = run(small_run, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_model_names_the_make_target(small_run, tmp_path):
    result = CliRunner().invoke(app, ["recommend", "--user", "3", "--processed-dir", str(small_run / "data" / "processed"),
                                      "--models-dir", str(tmp_path)])
    assert result.exit_code == 2 and "make train" in result.output


def test_recommend_all_command_writes_parquet(small_run, tmp_path):
    out = tmp_path / "recs.parquet"
    result = CliRunner().invoke(app, ["recommend-all", "--model", "autoint", "--out", str(out),
                                      "--processed-dir", str(small_run / "data" / "processed"),
                                      "--models-dir", str(small_run / "artifacts" / "models")])
    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(out).columns) == ["user_id", "rank", "movie_id", "title", "score"]
