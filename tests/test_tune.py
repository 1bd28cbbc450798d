"""make tune: candidates are scored after every epoch on validation rows carved from the training rows."""

import dataclasses
import json

import numpy as np

from pipeline import config
from pipeline.data import preprocess, raw_files
from pipeline.evaluation import report, tune
from pipeline.training import sampling
from tests.conftest import small_config

# These tests are about the search (per-epoch scoring, negatives, carves, merging tuning.json), not the model:
# one self-attention layer instead of three builds and traces the same model code in about a third of the time.
FAST = {"att_layer_num": 1}


def test_candidates_are_scored_every_epoch_and_fresh_negatives_are_redrawn(raw_dir, monkeypatch):
    data = preprocess.preprocess(*raw_files.read_raw(raw_dir))
    tuning = tune.carve_validation(data, users_sample=50)
    assert len(tuning.train) < len(data.train)  # validation rows are carved out of the training rows
    test_pairs = set(zip(data.test["user_id"], data.test["movie_id"]))
    assert not test_pairs & set(zip(tuning.test["user_id"], tuning.test["movie_id"]))  # never the test rows
    draws = []
    real = sampling.sample_unrated
    monkeypatch.setattr(sampling, "sample_unrated", lambda *a, **k: draws.append(real(*a, **k)) or draws[-1])
    for fresh in (False, True):
        draws.clear()
        cfg = dataclasses.replace(
            config.MODELS["autoint_sampled"], epochs=2, batch_size=1024, fresh_negatives=fresh, **FAST
        )
        records = tune.run_candidate(cfg, tuning, data.encoders.dims(), progress=lambda line: None)
        assert [record["epoch"] for record in records] == [1, 2]
        assert all(0 <= record["full_catalog/recall@10"] <= 1 for record in records)
        assert len(draws) == (2 if fresh else 1)
    assert (draws[0]["movie_id"].to_numpy() != draws[1]["movie_id"].to_numpy()).mean() > 0.5
    assert np.array_equal(draws[0]["user_id"].to_numpy(), draws[1]["user_id"].to_numpy())


def test_a_two_stage_candidate_is_scored_every_epoch_on_the_full_catalogue(raw_dir):
    data = preprocess.preprocess(*raw_files.read_raw(raw_dir))
    tuning = tune.carve_validation(data, users_sample=0)
    assert tuning.test["user_id"].nunique() == len(np.unique(tuning.test["user_id"]))  # every validation user
    cfg = small_config("autoint_two_stage", epochs=2, **FAST)
    records = tune.run_candidate(cfg, tuning, data.encoders.dims(), progress=lambda line: None)
    assert [record["epoch"] for record in records] == [1, 2]
    assert all(0 <= record["full_catalog/ndcg@10"] <= 1 for record in records)
    assert "rated/auc" not in records[0]  # a two-stage model only orders candidates


def test_temporal_carve_holds_out_each_users_latest_training_rows(raw_dir):
    data = preprocess.preprocess(*raw_files.read_raw(raw_dir))
    tuning = tune.carve_validation(data, users_sample=30, carve="temporal")
    temporal = data.split("temporal")
    assert len(tuning.train) + len(tuning.test) <= len(temporal.train)
    assert tuning.test["user_id"].nunique() == 30
    test_pairs = set(zip(temporal.test["user_id"], temporal.test["movie_id"]))
    assert not test_pairs & set(zip(tuning.test["user_id"], tuning.test["movie_id"]))
    last_fit = tuning.train.groupby("user_id")["timestamp"].max()
    first_val = tuning.test.groupby("user_id")["timestamp"].min()
    assert (first_val >= last_fit.loc[first_val.index]).all()


def test_tune_command_merges_candidates_run_one_at_a_time_and_the_report_lists_them(
    small_processed, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from pipeline.cli import app

    tiny = dataclasses.replace(config.MODELS["autoint_sampled"], epochs=1, batch_size=1024, **FAST)
    space = [tune.Candidate("random", tiny), tune.Candidate("temporal", dataclasses.replace(tiny, target="graded"))]
    monkeypatch.setattr(tune, "search_space", lambda: space)
    out = tmp_path / "tuning.json"
    args = ["tune", "--processed-dir", str(small_processed), "--out", str(out)]
    for index in ("1", "0"):  # the second merged into the first's file
        result = CliRunner().invoke(app, [*args, "--only", index])
        assert result.exit_code == 0, result.output
    tuning = json.loads(out.read_text())
    assert set(tuning) == {"random", "temporal"}
    assert [len(tuning[carve]["candidates"]) for carve in ("random", "temporal")] == [1, 1]
    assert tuning["temporal"]["candidates"][0]["config"]["target"] == "graded"
    table = "\n".join(report.tuning_table(tuning))
    assert "Validation carve: temporal" in table and "most popular" in table and "graded labels" in table

    # Candidate 0 run again once candidate 1 is dropped from the search: its record replaced, the dropped one's gone.
    monkeypatch.setattr(tune, "search_space", lambda: space[:1])
    result = CliRunner().invoke(app, [*args, "--only", "0"])
    assert result.exit_code == 0, result.output
    tuning = json.loads(out.read_text())
    assert set(tuning) == {"random"} and len(tuning["random"]["candidates"]) == 1  # re-run replaced
    result = CliRunner().invoke(app, [*args, "--only", "5"])
    assert result.exit_code == 2 and "--only" in result.output


def test_a_record_keeps_its_identity_when_only_the_model_name_changes():
    cfg = dataclasses.asdict(config.MODELS["autoint_mlp_sampled"])
    assert tune.config_key(cfg) == tune.config_key({**cfg, "model": "autoint_mlp_ranking"})
    assert tune.config_key(cfg) != tune.config_key({**cfg, "epochs": 9})
