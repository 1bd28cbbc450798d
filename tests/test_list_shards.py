"""The two-stage rankers' candidate lists written in shards (per fold, row groups of users) and read back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.data import preprocess, raw_files
from pipeline.ranking import list_shards
from pipeline.training import ranker
from tests.conftest import small_config


@pytest.fixture(scope="module")
def data(raw_dir):
    return preprocess.preprocess(*raw_files.read_raw(raw_dir))


@pytest.fixture(scope="module")
def cfg():
    return small_config("autoint_mlp_two_stage", history=6)


def assert_same_lists(got, expected):
    for field in dataclasses.fields(expected):
        want = getattr(expected, field.name)
        if want is None:
            assert getattr(got, field.name) is None, field.name
        else:
            np.testing.assert_array_equal(getattr(got, field.name), want, err_msg=field.name)
            assert getattr(got, field.name).dtype == want.dtype, field.name


def test_lists_written_in_chunks_of_users_equal_the_lists_made_at_once(data, cfg, tmp_path):
    at_once = ranker.training_lists(data.train, data.users, len(data.movies), cfg)
    folds = ranker.fold_lists(data.train, data.users, len(data.movies), cfg, chunk_users=7)
    settings = ranker.list_settings(cfg, len(data.movies))
    folder = list_shards.write(tmp_path / "candidate_lists", folds, settings)
    groups = list_shards.groups(folder)
    # One shard per fold, several row groups each, every group of at most 7 users in increasing user order.
    assert sorted({group.path.name for group in groups}) == [f"fold-{f}.parquet" for f in range(cfg.folds)]
    assert len(groups) > cfg.folds
    for group in groups:
        owners = list_shards.owners(group)
        assert len(np.unique(owners)) == len(owners) <= 7 and (np.diff(owners) > 0).all()
    stored, made_with = list_shards.load(folder)
    assert made_with == settings
    assert_same_lists(stored, at_once)
    assert ranker.saved_lists(folder, cfg, len(data.movies)) is not None
    assert ranker.saved_lists(folder, dataclasses.replace(cfg, candidates=cfg.candidates - 1), len(data.movies)) is None


def test_sharded_lists_keep_the_out_of_fold_guarantees(data, cfg, tmp_path):
    cfg = dataclasses.replace(cfg, loss="binary")  # keep every list, labelled or not
    folder = list_shards.write(
        tmp_path / "lists",
        ranker.fold_lists(data.train, data.users, len(data.movies), cfg, chunk_users=11),
        ranker.list_settings(cfg, len(data.movies)),
    )
    fold = ranker.folds_of(data.train, cfg.folds, cfg.seed)
    test_pairs = set(zip(data.test["user_id"], data.test["movie_id"]))
    for group in list_shards.groups(folder):
        held_out = int(group.path.stem.split("-")[1])
        inputs, labelled = data.train[fold != held_out], data.train[fold == held_out]
        seen = set(zip(inputs["user_id"], inputs["movie_id"]))
        liked = set(zip(*labelled.loc[labelled["label"] == 1, ["user_id", "movie_id"]].to_numpy().T))
        part = list_shards.read_group(group)
        for owner, movies, labels, history in zip(part.owner, part.movies, part.labels, part.history):
            pairs = {(owner, movie) for movie in movies}
            assert not pairs & seen  # a candidate is never an input row of its fold's retrieval model
            positives = {(owner, m) for m, y in zip(movies, labels) if y}
            assert positives == pairs & liked  # labels: the held-out training fold's liked movies, all of them
            assert not positives & test_pairs  # a test rating never labels a training list
            assert not set(movies) & set(history[history > 0] - 1)  # never in the list's own history
            assert set(history[history > 0] - 1) <= {m for u, m in seen if u == owner}


def test_the_candidates_command_writes_the_shards_and_the_index_last(small_processed, tmp_path):
    result = CliRunner().invoke(
        app, ["candidates", "--processed-dir", str(small_processed), "--models-dir", str(tmp_path / "models")]
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "models" / "candidate_lists"
    assert (folder / "lists.json").is_file() and list_shards.settings_of(folder)["folds"] == 5
    assert not [path for path in (tmp_path / "models").iterdir() if path.name.startswith(".tmp-")]
    missing = CliRunner().invoke(app, ["candidates", "--processed-dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "make preprocess" in missing.output


def test_an_interrupted_write_leaves_the_old_lists_and_no_half_folder(data, cfg, tmp_path):
    settings = ranker.list_settings(cfg, len(data.movies))
    folder = list_shards.write(
        tmp_path / "lists", ranker.fold_lists(data.train, data.users, len(data.movies), cfg), settings
    )
    before = list_shards.load(folder)[0]

    def failing_folds():
        yield from ranker.fold_lists(data.train, data.users, len(data.movies), cfg)
        raise OSError("disk full")

    with pytest.raises(OSError):
        list_shards.write(folder, failing_folds(), settings)
    assert_same_lists(list_shards.load(folder)[0], before)
    assert [path.name for path in tmp_path.iterdir()] == ["lists"]
