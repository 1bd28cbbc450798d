"""The SYNTHETIC MovieLens-format generator: real-data validation passes, ML-1M's value ranges, the marker."""

import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import config, config_scale
from pipeline.cli import app
from pipeline.data import movielens, preprocess, raw_files, synth

RATINGS = 30_000


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = synth.synthetic_root(RATINGS, tmp_path_factory.mktemp("data"))
    return root, synth.write_synthetic(root, RATINGS, seed=3)


def test_sizes_parse_and_name_the_folder():
    assert synth.parse_count("25M") == 25_000_000 and synth.parse_count("500k") == 500_000
    assert synth.parse_count("1.5M") == 1_500_000 and synth.parse_count("1000") == 1000
    with pytest.raises(ValueError):
        synth.parse_count("lots")
    assert synth.synthetic_root(25_000_000).name == "synthetic-25m"
    assert synth.synthetic_root(25_000_000).parent == config.DATA_DIR != config.RAW_DIR.parent / "synthetic-25m"


def test_output_passes_the_real_datas_validation_and_is_marked_synthetic(synthetic):
    root, raw_dir = synthetic
    assert raw_dir != config.RAW_DIR and raw_dir.parent == root
    assert synth.is_synthetic(root) and synth.is_synthetic(raw_dir) and synth.is_synthetic(root / "processed")
    assert "SYNTHETIC" in (raw_dir / synth.MARKER).read_text()
    ratings, movies, users = raw_files.read_raw(raw_dir)
    prepared = preprocess.prepare([ratings], movies, users)
    assert len(prepared.splits["train"]) + len(prepared.splits["test"]) == RATINGS == len(ratings)
    assert set(prepared.encoders.dims()) == set(config.FIELDS)
    assert "ratings: 30,000" in preprocess.summary(prepared)


def test_fields_have_ml1m_value_ranges(synthetic):
    _, raw_dir = synthetic
    ratings, movies, users = raw_files.read_raw(raw_dir)
    raw = (raw_dir / "ratings.dat").read_bytes().decode(movielens.RAW_ENCODING).splitlines()[0]
    assert re.fullmatch(r"\d+::\d+::[1-5]::\d+", raw)
    assert set(users["gender"]) <= {"M", "F"} and set(users["age"]) <= set(synth.AGES)
    assert users["occupation"].between(0, 20).all() and users["zip"].str.fullmatch(r"\d{5}").all()
    assert movies["title"].str.contains(r"\(\d{4}\)$").all()
    assert {g for genres in movies["genres"] for g in genres.split("|")} <= set(movielens.ML1M_GENRES)
    assert ratings["rating"].between(1, 5).all()
    assert ratings["timestamp"].between(synth.FIRST_TIMESTAMP, synth.LAST_TIMESTAMP).all()
    assert not ratings.duplicated(["user_id", "movie_id"]).any()
    assert ratings.groupby("user_id").size().min() >= config_scale.SYNTH["min_ratings_per_user"]
    assert set(ratings["movie_id"]) <= set(movies["movie_id"]) and set(ratings["user_id"]) <= set(users["user_id"])
    # ML-1M's share of positives is 57.5 %; heavy tails: the busiest user and movie far above the median.
    assert 0.45 < (ratings["rating"] >= config.LIKE_THRESHOLD).mean() < 0.7
    per_user, per_movie = ratings.groupby("user_id").size(), ratings.groupby("movie_id").size()
    assert per_user.max() > 2 * per_user.median() and per_movie.max() > 3 * per_movie.median()


def test_planted_structure_is_learnable(synthetic):
    """A movie's mean training rating and a user's taste cluster (through gender and age) predict test
    ratings better than the global mean: there is something for a model to learn."""
    _, raw_dir = synthetic
    processed = preprocess.preprocess(*raw_files.read_raw(raw_dir))
    train, test = processed.train, processed.test
    movie_mean = train.groupby("movie_id")["rating"].mean()
    predicted = test["movie_id"].map(movie_mean).fillna(train["rating"].mean())
    global_error = ((test["rating"] - train["rating"].mean()) ** 2).mean()
    assert ((test["rating"] - predicted) ** 2).mean() < 0.9 * global_error
    by_group = train.groupby(["gender", "age", "genre1"])["label"].mean()
    assert by_group.std() > 0.05


def test_same_seed_same_data():
    first, second = synth.generate(5_000, seed=1), synth.generate(5_000, seed=1)
    for a, b in zip(first, second):
        pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(synth.generate(5_000, seed=2)[0]["movie_id"], first[0]["movie_id"])


def test_command_writes_a_marked_folder(tmp_path):
    result = CliRunner().invoke(app, ["synth", "--ratings", "10k", "--data-dir", str(tmp_path), "--no-preprocess"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    root = tmp_path / "synthetic-10k"
    assert synth.is_synthetic(root) and (root / "ml-1m-format" / "ratings.dat").is_file()
    bad = CliRunner().invoke(app, ["synth", "--ratings", "many", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2
