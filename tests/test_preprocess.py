import json

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from pipeline import config
from pipeline.cli import app  # noqa: E402
from pipeline.data import fields, preprocess, raw_files, splits


@pytest.fixture(scope="module")
def raw(raw_dir):
    return raw_files.read_raw(raw_dir)


@pytest.fixture(scope="module")
def processed(raw):
    return preprocess.preprocess(*raw)


def test_read_raw_keeps_titles_with_colons_and_latin1(tmp_path):
    (tmp_path / "movies.dat").write_bytes(
        "7::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n8::Amélie (2001)::Comedy\n".encode("latin-1")
    )
    movies = raw_files.read_movies(tmp_path / "movies.dat")
    assert movies["title"].tolist() == ["Star Wars: Episode IV - A New Hope (1977)", "Amélie (2001)"]


def test_features_follow_the_seed_schema(raw, processed):
    ratings, movies, users = raw
    assert list(processed.train.columns) == [*config.FIELDS, "rating", "label", "timestamp"]
    assert len(processed.train) + len(processed.test) == len(ratings)
    row = processed.test.iloc[0]
    decoded = {field: processed.encoders.decode(field, [row[field]])[0] for field in config.FIELDS}
    rating = ratings[(ratings["user_id"] == decoded["user_id"]) & (ratings["movie_id"] == decoded["movie_id"])]
    assert (row["rating"], row["timestamp"]) == (rating["rating"].item(), rating["timestamp"].item())
    movie = movies.set_index("movie_id").loc[decoded["movie_id"]]
    year = int(movie["title"][-5:-1])
    assert (decoded["movie_year"], decoded["movie_decade"]) == (year, year // 10 * 10)
    genres = movie["genres"].split("|") + [config.GENRE_PLACEHOLDER] * 3
    assert [decoded["genre1"], decoded["genre2"], decoded["genre3"]] == genres[:3]
    when = pd.Timestamp(row["timestamp"], unit="s", tz="UTC")
    assert (decoded["rating_year"], decoded["rating_month"], decoded["rating_decade"]) == (
        when.year,
        when.month,
        when.year // 10 * 10,
    )
    user = users.set_index("user_id").loc[decoded["user_id"]]
    assert [decoded[field] for field in ("gender", "age", "occupation", "zip")] == user.tolist()


def test_label_is_rating_four_or_more_and_three_is_negative(processed):
    rows = pd.concat([processed.train, processed.test])
    assert set(rows.loc[rows["rating"] >= 4, "label"]) == {1}
    assert set(rows.loc[rows["rating"] <= 3, "label"]) == {0}
    assert (rows["rating"] == 3).any()


def test_genre_placeholder_for_movies_with_few_genres():
    movies = pd.DataFrame({"movie_id": [1, 2], "title": ["A (1999)", "B (2000)"], "genres": ["Drama", "Comedy|War"]})
    out = fields.movie_features(movies)
    assert out["genre2"].tolist() == ["(none)", "War"]
    assert out["genre3"].tolist() == ["(none)", "(none)"]


def test_encoders_round_trip_through_json(processed, tmp_path):
    encoders = processed.encoders
    encoders.save(tmp_path / "encoders.json")
    loaded = fields.Encoders.load(tmp_path / "encoders.json")
    assert loaded == encoders
    for field in config.FIELDS:
        codes = processed.train[field].to_numpy()
        raw_values = loaded.decode(field, codes)
        assert (loaded.encode(field, raw_values) == codes).all()
    assert json.loads((tmp_path / "encoders.json").read_text())["fields"] == list(config.FIELDS)


def test_unknown_values_are_rejected_not_refitted(processed):
    with pytest.raises(fields.UnknownValueError, match="user_id"):
        processed.encoders.encode("user_id", [1, 999_999])
    assert not processed.encoders.knows("rating_year", 1999)
    assert processed.encoders.knows("rating_year", processed.encoders.classes["rating_year"][0])


def test_codes_are_dense_and_dims_count_distinct_values(raw, processed):
    ratings, movies, users = raw
    rated_users = users[users["user_id"].isin(ratings["user_id"])]
    rated_movies = fields.movie_features(movies[movies["movie_id"].isin(ratings["movie_id"])])
    when = pd.to_datetime(ratings["timestamp"], unit="s", utc=True).dt
    distinct = {
        **{field: rated_users[field].nunique() for field in config.USER_FIELDS},
        **{field: rated_movies[field].nunique() for field in config.MOVIE_FIELDS},
        "rating_year": when.year.nunique(),
        "rating_month": when.month.nunique(),
        "rating_decade": (when.year // 10).nunique(),
    }
    dims = processed.encoders.dims()
    assert dims == distinct
    for field in config.FIELDS:
        both = pd.concat([processed.train[field], processed.test[field]])
        assert both.min() == 0 and both.max() == dims[field] - 1


def test_split_is_sklearns_80_20_with_seed_42(raw, processed):
    ratings = raw[0]
    expected_train, expected_test = train_test_split(ratings, test_size=0.2, random_state=42)
    for rows, expected in ((processed.train, expected_train), (processed.test, expected_test)):
        assert len(rows) == len(expected)
        decoded = processed.encoders.decode("user_id", rows["user_id"]).astype(int)
        assert (decoded == expected["user_id"].to_numpy()).all()
        assert (rows["timestamp"].to_numpy() == expected["timestamp"].to_numpy()).all()


def test_catalogue_and_users_tables(processed):
    assert sorted(processed.movies["movie_id"]) == list(range(processed.encoders.dims()["movie_id"]))
    assert list(processed.movies.columns) == [*config.MOVIE_FIELDS, "title", "genres"]
    assert sorted(processed.users["user_id"]) == list(range(processed.encoders.dims()["user_id"]))


def test_command_writes_tables_and_prints_summary(raw_dir, tmp_path):
    result = CliRunner().invoke(app, ["preprocess", "--raw-dir", str(raw_dir), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "field dims: [" in result.output and "positives" in result.output
    for name in ("train.parquet", "test.parquet", "movies.parquet", "users.parquet", "encoders.json"):
        assert (tmp_path / name).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_command_without_raw_files_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["preprocess", "--raw-dir", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "make download" in result.output
    assert not (tmp_path / "out").exists()


def test_temporal_split_holds_out_each_users_latest_fifth_and_at_least_one():
    frame = pd.DataFrame(
        {
            "user_id": [1] * 10 + [2] * 3 + [3],
            "timestamp": [5, 1, 9, 3, 7, 2, 8, 4, 6, 10] + [30, 10, 20] + [1],
            "movie_id": range(14),
        }
    )
    train, test = splits.split_temporal(frame)
    assert sorted(test.loc[test["user_id"] == 1, "timestamp"]) == [9, 10]  # floor(10 × 0.2) = 2 latest
    assert list(test.loc[test["user_id"] == 2, "timestamp"]) == [30]  # floor(0.6) → at least one
    assert list(test.loc[test["user_id"] == 3, "timestamp"]) == [1]  # a single rating goes to test
    assert len(train) + len(test) == len(frame)
    latest_train = train.groupby("user_id")["timestamp"].max()
    assert (test.groupby("user_id")["timestamp"].min() >= latest_train.reindex([1, 2, 3]).fillna(0)).all()


def test_temporal_split_keeps_file_order_for_ratings_at_the_same_time():
    frame = pd.DataFrame({"user_id": [1] * 5, "timestamp": [1, 2, 3, 3, 3], "movie_id": [10, 11, 12, 13, 14]})
    _, test = splits.split_temporal(frame, test_size=0.4)
    assert list(test["movie_id"]) == [13, 14]
