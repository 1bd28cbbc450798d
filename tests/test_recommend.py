"""recommend / recommend-all / bench on the small generated run: labels, history, candidates, context, new
people, the one scoring path (fast = plain predict, one user = every user), and bad input as one line + exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import config
from pipeline.bench.recommend_bench import plain_predict
from pipeline.cli import app
from pipeline.data.movielens import OCCUPATION_LABELS
from pipeline.ranking import architecture, model_files
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.ranking.scorers import ModelScorer, top_n
from pipeline.serving import answers
from pipeline.serving.errors import RecommendError
from pipeline.serving.recommender import Recommender

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rec(small_run):
    return Recommender.load(small_run / "data" / "processed", small_run / "artifacts" / "models")


@pytest.fixture(scope="module")
def ratings(raw_dir):
    return pd.read_csv(raw_dir / "ratings.dat", sep="::", engine="python", names=["user", "movie", "rating", "time"])


@pytest.fixture(scope="module")
def movies(raw_dir):
    return pd.read_csv(
        raw_dir / "movies.dat", sep="::", engine="python", names=["movie", "title", "genres"], encoding="latin-1"
    )


def dirs(small_run) -> list[str]:
    return [
        "--processed-dir",
        str(small_run / "data" / "processed"),
        "--models-dir",
        str(small_run / "artifacts" / "models"),
    ]


def run(small_run, *args):
    return CliRunner().invoke(app, ["recommend", *args, *dirs(small_run)])


def test_profile_uses_readable_labels(rec, raw_dir):
    line = (raw_dir / "users.dat").read_text(encoding="latin-1").splitlines()[2]
    user_id, gender, age, occupation, zip_code = line.split("::")
    who = rec.profile(int(user_id))
    assert who == {
        "user_id": int(user_id),
        "gender": {"M": "male", "F": "female"}[gender],
        "age": {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}[int(age)],
        "occupation": OCCUPATION_LABELS[int(occupation)],
        "zip": zip_code,
    }
    assert len(OCCUPATION_LABELS) == 21 and OCCUPATION_LABELS[12] == "programmer"


def test_liked_history_is_every_rating_of_four_or_more_newest_first(rec, ratings, movies):
    mine = ratings[(ratings["user"] == 5) & (ratings["rating"] >= 4)]
    history = rec.liked_history(5)
    assert list(history.columns) == ["movie_id", "title", "genres", "rating", "date"]
    assert sorted(history["movie_id"]) == sorted(mine["movie"])
    expected_dates = pd.to_datetime(mine.set_index("movie")["time"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    assert (history["date"].to_numpy() == expected_dates[history["movie_id"]].to_numpy()).all()
    assert list(history["date"]) == sorted(history["date"], reverse=True)
    titles = movies.set_index("movie")["title"]
    assert (history["title"].to_numpy() == titles[history["movie_id"]].to_numpy()).all()


@pytest.mark.parametrize("mode", config.SERVED_MODES)
def test_recommendations_are_n_unseen_movies_best_first(rec, ratings, mode):
    top = rec.recommend(7, "autoint", n=10, mode=mode)
    assert list(top.columns) == ["rank", "movie_id", "title", "genres", "score", "because"]
    assert list(top["rank"]) == list(range(1, 11))
    assert not set(top["movie_id"]) & set(ratings.loc[ratings["user"] == 7, "movie"])
    assert top["score"].is_monotonic_decreasing and top["movie_id"].is_unique


def test_two_stage_recommends_from_the_retrieval_candidates_only(rec, ratings):
    """The ranker only reorders EASE's top candidates of the user's unseen movies."""
    from pipeline.ranking import candidates

    scorer = rec.scorer("autoint_mlp_two_stage")
    code = rec.user_code(7)
    lists = candidates.user_lists(scorer.retrieval, rec.user_ratings(code), rec.users, scorer.cfg)
    candidates = set(rec.encoders.decode("movie_id", lists.movies[0]).astype(int))
    everything = rec.recommend(7, "autoint_mlp", n=10_000)
    assert len(everything) == scorer.cfg.candidates
    assert set(everything["movie_id"]) == candidates
    seen = set(ratings.loc[ratings["user"] == 7, "movie"])
    assert not candidates & seen


def test_reference_mode_ranks_the_whole_unseen_catalogue(rec, ratings):
    everything = rec.recommend(7, "autoint_mlp", n=100_000, mode="reference")
    rated = set(ratings.loc[ratings["user"] == 7, "movie"])
    assert set(everything["movie_id"]) == set(ratings["movie"]) - rated


def test_context_defaults_to_the_latest_rating_and_can_be_chosen(rec, ratings):
    latest = pd.to_datetime(ratings.loc[ratings["user"] == 7, "time"].max(), unit="s", utc=True)
    assert rec.context(7) == (latest.year, latest.month)
    assert rec.context(7, month=2) == (latest.year, 2)
    years = rec.valid_years()
    assert years == sorted(years) and all(2000 <= year <= 2003 for year in years)
    for mode in config.SERVED_MODES:
        default = rec.recommend(7, "autoint", n=20, mode=mode)
        same = rec.recommend(7, "autoint", year=latest.year, month=latest.month, n=20, mode=mode)
        pd.testing.assert_frame_equal(default, same)
        early = rec.recommend(7, "autoint", year=years[0], month=1, n=20, mode=mode)
        late = rec.recommend(7, "autoint", year=years[-1], month=12, n=20, mode=mode)
        assert not np.allclose(early["score"].to_numpy(), late["score"].to_numpy())


@pytest.mark.parametrize("name", config.REFERENCE_MODELS)
def test_the_traced_scorer_ranks_exactly_like_plain_predict(rec, small_run, name):
    model = model_files.load_keras(config.model_path(name, "random", small_run / "artifacts" / "models"))
    users = rec.users.head(40).assign(rating_year=0, rating_month=3, rating_decade=0)
    exclude = rec.ratings[["user_id", "movie_id"]]
    fast = top_n(ModelScorer(KerasRuntime(model)), users, rec.movies, exclude, n=10)
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


@pytest.mark.parametrize("name", ["autoint_mlp", "random"])
def test_top_n_gives_the_same_lists_in_one_chunk_or_many(rec, small_run, name):
    """On ML-1M about 45 chunks run."""
    from pipeline.evaluation import baselines

    if name == "random":
        scorer = baselines.fit_baseline("random", rec.ratings)
        score_fn = lambda inputs: scorer(inputs["user_id"], inputs["movie_id"])  # noqa: E731
    else:
        score_fn = ModelScorer(
            KerasRuntime(model_files.load_keras(config.model_path(name, "random", small_run / "artifacts" / "models")))
        )
    users = rec.users.head(60).assign(rating_year=0, rating_month=3, rating_decade=0)
    exclude = rec.ratings[["user_id", "movie_id"]]
    whole = top_n(score_fn, users, rec.movies, exclude, n=7)
    chunked = top_n(score_fn, users, rec.movies, exclude, n=7, chunk_rows=len(rec.movies) * 7)  # 9 chunks
    pd.testing.assert_frame_equal(whole, chunked)


def test_model_scorer_gives_the_same_scores_across_batch_boundaries(rec, small_run):
    from pipeline.ranking.scorers import score_rows

    model = model_files.load_keras(config.model_path("autoint", "random", small_run / "artifacts" / "models"))
    rows = rec.ratings.merge(rec.users, on="user_id").merge(rec.movies, on="movie_id").head(1000)
    whole = score_rows(ModelScorer(KerasRuntime(model, batch_rows=4096)), rows)
    batched = score_rows(ModelScorer(KerasRuntime(model, batch_rows=97)), rows)  # 11 batches, the last one short
    np.testing.assert_allclose(whole, batched, rtol=1e-6)
    np.testing.assert_allclose(whole, model.predict(architecture.model_inputs(rows), verbose=0)[:, 0], rtol=1e-5)


@pytest.mark.parametrize("mode", config.SERVED_MODES)
def test_recommend_all_is_every_users_recommend(rec, mode):
    top = rec.recommend_all("autoint_mlp", n=10, progress=False, mode=mode)
    assert list(top.columns) == ["user_id", "rank", "movie_id", "title", "genres", "score"]
    assert len(top) == 10 * len(rec.users)
    for user_id in (1, 7, 150):
        one = rec.recommend(user_id, "autoint_mlp", n=10, mode=mode)
        mine = top[top["user_id"] == user_id]
        assert list(mine["movie_id"]) == list(one["movie_id"])
        np.testing.assert_allclose(mine["score"], one["score"], rtol=1e-5)


def test_a_new_person_gets_unseen_movies_and_the_profile_matters(rec):
    liked = [int(movie) for movie in rec.movies_by_likes()["movie_id"].head(5)]
    top = rec.recommend_for_liked(liked, n=10)
    assert list(top["rank"]) == list(range(1, 11)) and not set(top["movie_id"]) & set(liked)
    assert top["score"].is_monotonic_decreasing
    again = rec.recommend_for_liked([*liked, liked[0], liked[2]], n=10)  # duplicates are ignored
    pd.testing.assert_frame_equal(top, again)
    other = rec.recommend_for_liked(liked, gender="F", age=56, occupation=13, n=10)
    assert not np.allclose(top["score"].to_numpy(), other["score"].to_numpy())
    different = rec.recommend_for_liked(liked[2:], n=10)
    assert list(different["movie_id"]) != list(top["movie_id"])


@pytest.mark.parametrize(
    "liked, message",
    [
        ("", "the liked list is empty"),
        ("12,abc", "MovieLens movie IDs (whole numbers), not abc"),
        ("1,99999", "not in the catalogue: 99999"),
    ],
)
def test_a_bad_liked_list_is_one_line_and_exit_2(small_run, liked, message):
    result = run(small_run, "--liked", liked)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_new_person_from_the_command_line_as_text_and_json(small_run, rec):
    liked = ",".join(str(movie) for movie in rec.movies_by_likes()["movie_id"].head(3))
    result = run(small_run, "--liked", liked, "--gender", "F", "--n", "4")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("a new person: female") and "liked movies given: 3" in result.output
    out = json.loads(run(small_run, "--liked", liked, "--n", "4", "--json").stdout)
    assert out["profile"]["user_id"] is None and out["mode"] == "two_stage"
    assert [row["movie_id"] for row in out["liked_history"]] == [int(movie) for movie in liked.split(",")]
    ((name, rows),) = out["recommendations"].items()
    assert name == config.model_name(config.DEFAULT_ARCHITECTURE, "two_stage")
    expected = rec.recommend_for_liked([int(movie) for movie in liked.split(",")], n=4)
    assert [row["movie_id"] for row in rows] == list(expected["movie_id"])
    result = run(small_run, "--liked", liked, "--mode", "reference")
    assert result.exit_code == 2 and "two-stage models only" in result.stderr


def test_command_prints_profile_history_and_both_lists(small_run):
    result = run(small_run, "--user", "3", "--architecture", "both", "--n", "5")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("user 3: ") and "liked history" in result.output
    header = [line for line in result.output.splitlines() if line.lstrip().startswith("rank")][0].split()
    assert header == ["rank", "autoint_two_stage", "score", "because", "autoint_mlp_two_stage", "score", "because"]
    ranks = [line.split()[0] for line in result.output.splitlines()[-5:]]
    assert ranks == ["1", "2", "3", "4", "5"]


def test_default_model_and_json_output(small_run, rec):
    result = run(small_run, "--user", "3", "--n", "4", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["profile"] == rec.profile(3)
    assert list(out["recommendations"]) == [config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)]
    rows = next(iter(out["recommendations"].values()))
    expected = rec.recommend(3, n=4)
    assert [row["movie_id"] for row in rows] == list(expected["movie_id"])
    assert [row["rank"] for row in rows] == [1, 2, 3, 4]
    assert len(out["liked_history"]) == len(rec.liked_history(3))
    assert (out["context"]["year"], out["context"]["month"]) == rec.context(3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--user", "abc"], "whole number"),
        (["--user", "99999"], "unknown user 99999"),
        (["--user", "3", "--month", "13"], "month must be between 1 and 12"),
        (["--user", "3", "--month", "0"], "month must be between 1 and 12"),
        (["--user", "3", "--year", "1999"], "valid years: 2000"),
        (["--user", "3", "--year", "soon"], "year must be a whole number"),
        (["--user", "3", "--n", "0"], "N must be at least 1"),
        (["--user", "3", "--liked", "1"], "not both"),
        (["--liked", "1", "--gender", "X"], "gender must be one of F, M"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(small_run, args, message):
    result = run(small_run, *args)
    assert result.exit_code == 2
    assert result.stdout == "" and result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize("option, value", [("--architecture", "deepfm"), ("--model", "deepfm"), ("--mode", "best")])
def test_unknown_choices_are_refused_by_the_command_line(small_run, option, value):
    result = run(small_run, "--user", "3", option, value)
    assert result.exit_code == 2 and value in result.output and "Traceback" not in result.output


def test_missing_model_or_data_names_the_make_target(small_run, tmp_path):
    processed = str(small_run / "data" / "processed")
    result = CliRunner().invoke(
        app, ["recommend", "--user", "3", "--processed-dir", processed, "--models-dir", str(tmp_path)]
    )
    name = config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)
    assert result.exit_code == 2 and f"`make train MODEL={name}`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(app, ["recommend", "--user", "3", "--processed-dir", str(tmp_path)])
    assert result.exit_code == 2 and "`make preprocess`" in result.stderr
    with pytest.raises(RecommendError, match="make train"):
        Recommender.load(processed, tmp_path, models=[name])


def test_recommend_all_command_writes_parquet(small_run, tmp_path, rec):
    result = CliRunner().invoke(app, ["recommend-all", "--model", "both", "--out-dir", str(tmp_path), *dirs(small_run)])
    assert result.exit_code == 0, result.output
    for architecture_name in config.ARCHITECTURES:
        top = pd.read_parquet(tmp_path / f"recommendations_{config.model_name(architecture_name)}.parquet")
        assert list(top.columns) == ["user_id", "rank", "movie_id", "title", "genres", "score"]
        assert len(top) == config.TOP_N * len(rec.users)


def test_a_new_process_prints_clean_json_and_one_line_errors(small_run):
    command = [sys.executable, "-m", "pipeline", "recommend", "--user", "3", "--n", "3", *dirs(small_run)]
    done = subprocess.run([*command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert len(json.loads(done.stdout)["recommendations"]) == 1
    done = subprocess.run([*command, "--year", "1999"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1


def test_search_finds_titles_most_liked_first(rec, movies):
    found = rec.search_movies("movie 1", limit=50)
    assert len(found) > 0 and found["title"].str.lower().str.contains("movie 1").all()
    assert found["likes"].is_monotonic_decreasing
    assert set(found["movie_id"]) <= set(movies["movie"])
    with pytest.raises(RecommendError, match="empty"):
        rec.search_movies("  ")


@pytest.mark.slow
def test_bench_writes_its_figures(small_run, tmp_path):
    out = tmp_path / "bench.json"
    liked = "1,2,3"
    result = CliRunner().invoke(
        app,
        ["bench", "--repeats", "2", "--cold-runs", "1", "--liked", liked, "--out", str(out), *dirs(small_run)],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(figures["runtimes"]) == {"keras", "litert"}
    assert figures["same_top10"] is True  # the LiteRT file ranks as its Keras model
    assert set(figures["ranker_train_s"]) == set(config.TWO_STAGE_MODELS)
    for runtime in figures["runtimes"].values():
        assert 0 < runtime["cold_liked"]["peak_rss_mib"] < 8192 and runtime["scored_new_person"]["cpu_ms"] > 0
    assert figures["keras_over_litert"]["cold_liked"]["s"] > 0
    assert "every user's Top-10" in result.output and "Keras ÷ LiteRT" in result.output


def test_default_answers_come_from_a_fresh_precomputed_table_and_equal_the_scored_ones(finished_run, tmp_path, rec):
    import os
    import shutil

    # The finished run's tables (conftest: `precompute --n 20` on the small run), copied: the end makes them stale.
    shutil.copytree(finished_run / "artifacts", tmp_path / "artifacts")
    models = tmp_path / "artifacts" / "models"
    processed = str(finished_run / "data" / "processed")
    table = pd.read_parquet(tmp_path / "artifacts" / "precomputed" / "autoint_mlp_two_stage.parquet")
    assert list(table.columns) == ["user_id", "rank", "movie_id", "score"] and table["rank"].max() == 20
    with_table = Recommender.load(processed, models)
    assert with_table.precomputed("autoint_mlp_two_stage") is not None
    for user_id in (1, 7, 150):
        for n in (5, 20):
            pd.testing.assert_frame_equal(with_table.recommend(user_id, n=n), rec.recommend(user_id, n=n), rtol=1e-5)
    assert "autoint_mlp_two_stage" not in with_table.scorers  # answered without loading the model
    # The command's (and the page's) default request too: the known user's output never loads the model.
    output = answers.known_user_output(with_table, 7, "autoint_mlp", "two_stage", None, None, 10)
    pd.testing.assert_frame_equal(output["recommendations"]["autoint_mlp_two_stage"], rec.recommend(7), rtol=1e-5)
    assert "autoint_mlp_two_stage" not in with_table.scorers
    with_table.recommend(7, n=21)  # more than the table holds: scored
    with_table.recommend(7, month=3)  # another context: scored
    assert "autoint_mlp_two_stage" in with_table.scorers
    # A model trained after its table makes the table stale: it is not used.
    model = config.model_path("autoint_mlp_two_stage", "random", models)
    os.utime(model, (model.stat().st_atime, model.stat().st_mtime + 3600))
    assert Recommender.load(processed, models).precomputed("autoint_mlp_two_stage") is None
