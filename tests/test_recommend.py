"""recommend / recommend-all / bench on the small generated run: labels, history, candidates, context,
the one scoring path (fast = plain predict, one user = every user), and bad input as one line + exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import config, recommend
from pipeline.bench import plain_predict
from pipeline.cli import app
from pipeline.scoring import ModelScorer, top_n
from pipeline.train import load_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rec(small_run):
    return recommend.load_recommender(small_run / "data" / "processed", small_run / "artifacts" / "models")


@pytest.fixture(scope="module")
def ratings(raw_dir):
    return pd.read_csv(raw_dir / "ratings.dat", sep="::", engine="python", names=["user", "movie", "rating", "time"])


def dirs(small_run) -> list[str]:
    return ["--processed-dir", str(small_run / "data" / "processed"),
            "--models-dir", str(small_run / "artifacts" / "models")]


def run(small_run, *args):
    return CliRunner().invoke(app, ["recommend", *args, *dirs(small_run)])


def test_profile_uses_readable_labels(rec, raw_dir):
    line = (raw_dir / "users.dat").read_text(encoding="latin-1").splitlines()[2]
    user_id, gender, age, occupation, zip_code = line.split("::")
    who = recommend.profile(rec, int(user_id))
    assert who == {"user_id": int(user_id), "gender": recommend.GENDER_LABELS[gender],
                   "age": recommend.AGE_LABELS[int(age)], "occupation": recommend.OCCUPATION_LABELS[int(occupation)],
                   "zip": zip_code}
    assert len(recommend.OCCUPATION_LABELS) == 21 and recommend.AGE_LABELS[56] == "56+"


def test_liked_history_is_every_rating_of_four_or_more_newest_first(rec, ratings):
    mine = ratings[(ratings["user"] == 5) & (ratings["rating"] >= 4)]
    history = recommend.liked_history(rec, 5)
    assert list(history.columns) == ["movie_id", "title", "genres", "rating", "date"]
    assert sorted(history["movie_id"]) == sorted(mine["movie"])
    expected_dates = pd.to_datetime(mine.set_index("movie")["time"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    assert (history["date"].to_numpy() == expected_dates[history["movie_id"]].to_numpy()).all()
    assert list(history["date"]) == sorted(history["date"], reverse=True)
    assert (history["rating"] >= 4).all() and history["title"].notna().all()


def test_recommendations_are_n_unrated_movies_best_first(rec, ratings):
    top = recommend.recommend(rec, 7, "autoint", n=10)
    assert list(top.columns) == ["rank", "movie_id", "title", "genres", "score"]
    assert list(top["rank"]) == list(range(1, 11))
    assert not set(top["movie_id"]) & set(ratings.loc[ratings["user"] == 7, "movie"])
    assert top["score"].is_monotonic_decreasing and top["title"].notna().all()


def test_candidates_are_the_known_movies_minus_every_rated_one(rec, ratings):
    everything = recommend.recommend(rec, 7, "autoint_mlp", n=100_000)
    rated = set(ratings.loc[ratings["user"] == 7, "movie"])
    assert set(everything["movie_id"]) == set(ratings["movie"]) - rated
    assert len(everything) == ratings["movie"].nunique() - len(rated)


def test_seed_and_ranking_modes_use_different_models(rec):
    seed = recommend.recommend(rec, 7, "autoint", n=5, mode="seed")
    ranking = recommend.recommend(rec, 7, "autoint", n=5, mode="ranking")
    assert not np.allclose(seed["score"].to_numpy(), ranking["score"].to_numpy())


def test_context_defaults_to_the_latest_rating_and_can_be_chosen(rec, ratings):
    latest = pd.to_datetime(ratings.loc[ratings["user"] == 7, "time"].max(), unit="s", utc=True)
    assert recommend.context(rec, 7) == (latest.year, latest.month)
    assert recommend.context(rec, 7, month=2) == (latest.year, 2)
    years = recommend.valid_years(rec)
    assert years == sorted(years) and all(2000 <= year <= 2003 for year in years)
    default = recommend.recommend(rec, 7, "autoint", n=20, mode="seed")
    same = recommend.recommend(rec, 7, "autoint", year=latest.year, month=latest.month, n=20, mode="seed")
    pd.testing.assert_frame_equal(default, same)
    a = recommend.recommend(rec, 7, "autoint", year=years[0], month=1, n=20, mode="seed")
    b = recommend.recommend(rec, 7, "autoint", year=years[-1], month=12, n=20, mode="seed")
    assert not np.allclose(a["score"].to_numpy(), b["score"].to_numpy())


@pytest.mark.parametrize("name", config.RANKING_MODELS)
def test_fast_path_ranks_exactly_like_plain_predict(rec, small_run, name):
    model = load_model(config.model_path(name, "random", small_run / "artifacts" / "models"))
    users = rec.users.head(40).assign(rating_year=0, rating_month=3, rating_decade=0)
    exclude = rec.ratings[["user_id", "movie_id"]]
    scorer = ModelScorer(model)
    assert scorer.grid is not None  # the trained models take the fast grid path
    fast = top_n(scorer, users, rec.movies, exclude, n=10)
    slow = top_n(plain_predict(model, batch_size=4096), users, rec.movies, exclude, n=10)
    assert len(fast) == 400
    assert (fast[["user_id", "rank", "movie_id"]].to_numpy() == slow[["user_id", "rank", "movie_id"]].to_numpy()).all()
    np.testing.assert_allclose(fast["score"], slow["score"], rtol=1e-5)


def test_top_n_breaks_ties_by_movie_code_and_never_scores_excluded_pairs(rec):
    scored = []

    def ties(inputs):
        scored.append(np.stack([inputs["user_id"], inputs["movie_id"]], axis=1))
        return (inputs["movie_id"] % 3 == 0).astype(np.float32)

    users = rec.users.head(3).assign(rating_year=0, rating_month=0, rating_decade=0)
    exclude = pd.DataFrame({"user_id": users["user_id"].iloc[[0, 0]], "movie_id": [0, 3]})
    top = top_n(ties, users, rec.movies, exclude, n=4)
    first = top[top["user_id"] == users["user_id"].iloc[0]]
    assert list(first["movie_id"]) == [6, 9, 12, 15]
    assert list(top[top["user_id"] == users["user_id"].iloc[1]]["movie_id"]) == [0, 3, 6, 9]
    pairs = {tuple(pair) for pair in np.concatenate(scored)}
    assert (users["user_id"].iloc[0], 0) not in pairs and len(pairs) == 3 * len(rec.movies) - 2


def test_recommend_all_is_every_users_recommend(rec):
    top = recommend.recommend_all(rec, "autoint_mlp", n=10, progress=False)
    assert list(top.columns) == ["user_id", "rank", "movie_id", "title", "score"]
    assert len(top) == 10 * len(rec.users)
    assert top.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 11))).all()
    for user_id in (1, 7, 150):
        one = recommend.recommend(rec, user_id, "autoint_mlp", n=10)
        mine = top[top["user_id"] == user_id]
        assert list(mine["movie_id"]) == list(one["movie_id"])
        np.testing.assert_allclose(mine["score"], one["score"], rtol=1e-6)


def test_command_prints_profile_history_and_both_lists(small_run):
    result = run(small_run, "--user", "3", "--model", "both", "--n", "5")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("user 3: ") and "liked history" in result.output
    assert "autoint_ranking" in result.output and "autoint_mlp_ranking" in result.output
    assert "    5 " in result.output and "    6 " not in result.output


def test_default_model_and_json_output(small_run, rec):
    result = run(small_run, "--user", "3", "--n", "4", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["profile"] == recommend.profile(rec, 3)
    assert list(out["recommendations"]) == [recommend.model_name(recommend.DEFAULT_MODEL)]
    assert [row["rank"] for row in next(iter(out["recommendations"].values()))] == [1, 2, 3, 4]
    assert len(out["liked_history"]) == len(recommend.liked_history(rec, 3))
    assert out["context"] == dict(zip(("year", "month"), recommend.context(rec, 3)))


@pytest.mark.parametrize("args, message", [
    (["--user", "abc"], "whole number"),
    (["--user", "99999"], "unknown user 99999"),
    (["--user", "3", "--month", "13"], "month must be between 1 and 12"),
    (["--user", "3", "--month", "0"], "month must be between 1 and 12"),
    (["--user", "3", "--year", "1999"], "valid years: 2000"),
    (["--user", "3", "--year", "soon"], "year must be a whole number"),
    (["--user", "3", "--n", "0"], "N must be at least 1"),
    (["--user", "3", "--model", "deepfm"], "unknown model 'deepfm'"),
    (["--user", "3", "--mode", "best"], "unknown mode 'best'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(small_run, args, message):
    result = run(small_run, *args)
    assert result.exit_code == 2
    assert result.stdout == "" and result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_missing_model_or_data_names_the_make_target(small_run, tmp_path):
    processed = str(small_run / "data" / "processed")
    result = CliRunner().invoke(app, ["recommend", "--user", "3", "--processed-dir", processed,
                                      "--models-dir", str(tmp_path)])
    name = recommend.model_name(recommend.DEFAULT_MODEL)
    assert result.exit_code == 2 and f"`make train MODEL={name}`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["recommend", "--user", "3", "--processed-dir", str(tmp_path)])
    assert result.exit_code == 2 and "`make preprocess`" in result.stderr
    with pytest.raises(recommend.RecommendError, match="make train"):
        recommend.load_recommender(processed, tmp_path)


def test_recommend_all_command_writes_parquet(small_run, tmp_path, rec):
    result = CliRunner().invoke(app, ["recommend-all", "--model", "both", "--out-dir", str(tmp_path), *dirs(small_run)])
    assert result.exit_code == 0, result.output
    for model in config.MODEL_NAMES:
        top = pd.read_parquet(tmp_path / f"recommendations_{recommend.model_name(model)}.parquet")
        assert list(top.columns) == ["user_id", "rank", "movie_id", "title", "score"]
        assert len(top) == config.TOP_N * len(rec.users)


def test_a_new_process_prints_clean_json_and_one_line_errors(small_run):
    command = [sys.executable, "-m", "pipeline", "recommend", "--user", "3", "--n", "3", *dirs(small_run)]
    done = subprocess.run([*command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert len(json.loads(done.stdout)["recommendations"]) == 1
    done = subprocess.run([*command, "--year", "1999"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1


def test_bench_writes_its_figures(small_run, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--model", "autoint", "--repeats", "2", "--plain-users", "5",
                                      "--fast-users", "20", "--cold-runs", "1", "--out", str(out), *dirs(small_run)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["same_ranking_fast_and_plain"] is True
    for key in ("one_user_ms_fast", "one_user_ms_plain", "all_users_s_fast", "all_users_s_plain", "cold_recommend_s"):
        assert figures[key] > 0
    assert "every user's Top-10" in result.output
