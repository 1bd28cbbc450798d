"""precompute and recommend-all in chunks of users: the same Top-N in one chunk or many, one set of candidate
lists per chunk for both rankers, files written chunk by chunk that read back as the whole table, and the
folders and models they are given."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline import config
from pipeline.cli import app
from pipeline.ranking import candidates
from pipeline.serving.recommender import Recommender
from pipeline.serving.served_models import precomputed_path

SMALL_CHUNK = 7  # the generated data's 300 users in 43 chunks


@pytest.fixture(scope="module")
def rec(small_run):
    return Recommender.load(small_run / "data" / "processed", small_run / "artifacts" / "models")


def every_users(rec, names, n, chunk_users):
    chunks = list(rec.every_users_top(names, n, chunk_users=chunk_users))
    return {name: pd.concat([chunk[name] for chunk in chunks], ignore_index=True) for name in names}, len(chunks)


@pytest.mark.parametrize("names", [config.TWO_STAGE_MODELS, config.REFERENCE_MODELS[1:]])
def test_every_users_top_n_is_the_same_in_one_chunk_or_many(rec, names):
    whole, one = every_users(rec, names, 12, len(rec.users))
    chunked, many = every_users(rec, names, 12, SMALL_CHUNK)
    assert one == 1 and many == -(-len(rec.users) // SMALL_CHUNK)
    for name in names:
        assert len(whole[name]) == 12 * len(rec.users) and whole[name]["user_id"].is_monotonic_increasing
        pd.testing.assert_frame_equal(chunked[name], whole[name], rtol=1e-6, obj=name)


def test_both_rankers_share_each_chunks_lists(rec, monkeypatch):
    made = []
    user_lists = candidates.user_lists
    monkeypatch.setattr(candidates, "user_lists", lambda *args, **kw: made.append(1) or user_lists(*args, **kw))
    _, chunks = every_users(rec, config.TWO_STAGE_MODELS, 5, SMALL_CHUNK)
    assert len(made) == chunks  # not one set per ranker and chunk


def test_precompute_writes_chunk_by_chunk_the_table_recommend_all_makes(small_run, tmp_path, rec, monkeypatch):
    models = tmp_path / "artifacts" / "models"
    shutil.copytree(small_run / "artifacts" / "models", models)
    monkeypatch.setattr(config, "SCORING_CHUNK_USERS", SMALL_CHUNK)
    folders = ["--processed-dir", str(small_run / "data" / "processed"), "--models-dir", str(models)]
    result = CliRunner().invoke(app, ["precompute", "--n", "15", "--model", "autoint_mlp_two_stage", *folders])
    assert result.exit_code == 0, result.output
    assert "precomputed autoint_mlp_two_stage: 300 users × 15" in result.stdout
    assert not precomputed_path("autoint_two_stage", models).exists()  # only the model asked for
    table = pd.read_parquet(precomputed_path("autoint_mlp_two_stage", models))
    assert pq.ParquetFile(precomputed_path("autoint_mlp_two_stage", models)).num_row_groups == 43  # one per chunk
    expected = rec.recommend_all("autoint_mlp", n=15, progress=False)[list(table.columns)]
    pd.testing.assert_frame_equal(table, expected, rtol=1e-6)
    assert (tmp_path / "artifacts" / "timings" / "precompute.json").is_file()  # beside its models, not in artifacts/

    result = CliRunner().invoke(app, ["recommend-all", "--model", "both", "--n", "4", *folders])
    assert result.exit_code == 0, result.output
    for name in config.TWO_STAGE_MODELS:
        written = pd.read_parquet(tmp_path / "artifacts" / f"recommendations_{name}.parquet")  # default: beside models
        architecture = name.removesuffix(config.MODES["two_stage"])
        pd.testing.assert_frame_equal(written, rec.recommend_all(architecture, n=4, progress=False), rtol=1e-6)
        assert f"wrote {4 * len(rec.users):,} rows ({len(rec.users):,} users × 4)" in result.stdout


def test_precompute_refuses_a_model_without_candidates(small_run, tmp_path):
    folders = ["--processed-dir", str(small_run / "data" / "processed"), "--models-dir", str(tmp_path / "models")]
    result = CliRunner().invoke(app, ["precompute", "--model", "autoint", *folders])
    assert result.exit_code == 2 and "two-stage" in result.stderr and len(result.stderr.strip().splitlines()) == 1
