"""The evaluation in chunks of users: the same metrics, predictions and Top-10 lists in one chunk or many, one set
of candidate lists per chunk for rankers of one list shape, and test rows scored in data.test's order."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import config
from pipeline.data import history
from pipeline.data.processed import load_processed
from pipeline.data.synth import MARKER
from pipeline.evaluation import evaluate
from pipeline.ranking import candidates
from pipeline.ranking.scorers import score_rows

SMALL_CHUNK = 7  # the generated data's 300 users in 43 chunks


@pytest.fixture(scope="module")
def data(small_run):
    return load_processed(small_run / "data" / "processed")


def outputs(folder):
    """The random split's predictions/ and top10/ tables an evaluation wrote into `folder`."""
    return {
        path.relative_to(folder): pd.read_parquet(path)
        for part in ("predictions", "top10")
        for path in sorted((folder / part).rglob("*.parquet"))
        if "temporal" not in path.relative_to(folder).parts
    }


def test_metrics_predictions_and_top10_are_the_same_in_one_chunk_or_many(small_run, data, tmp_path):
    # In one chunk: the small run's own evaluation (its 300 users are one chunk of config.SCORING_CHUNK_USERS).
    assert config.SCORING_CHUNK_USERS >= len(data.users)
    artifacts = small_run / "artifacts"
    metrics = json.loads((artifacts / "metrics.json").read_text())
    whole = {key: value for key, value in metrics.items() if key != "temporal"}
    whole_files = outputs(artifacts)
    chunked = evaluate.evaluate_models(
        data, config.PRODUCT_MODELS, artifacts / "models", tmp_path, echo=lambda line: None, chunk_users=SMALL_CHUNK
    )
    chunked_files = outputs(tmp_path)
    assert chunked["data"] == whole["data"] and chunked.keys() == whole.keys()
    for group in ("models", "baselines"):
        for name, protocols in whole[group].items():
            for protocol, values in protocols.items():
                if not isinstance(values, dict):  # train_seconds
                    continue
                assert chunked[group][name][protocol].keys() == values.keys(), (name, protocol)
                for metric, value in values.items():
                    expected = value if value is None else pytest.approx(value, rel=1e-6)  # logloss of counts: None
                    assert chunked[group][name][protocol][metric] == expected, (name, protocol, metric)
    # predictions/ of the 2 reference models and 5 baselines, top10/ of every model and baseline
    assert set(chunked_files) == set(whole_files) and len(whole_files) == 7 + 9
    for path, frame in whole_files.items():
        pd.testing.assert_frame_equal(chunked_files[path], frame, rtol=1e-6, obj=str(path))


def test_rankers_of_one_list_shape_share_each_chunks_lists(small_run, data, monkeypatch):
    from pipeline.ranking.scorers import load_scorer
    from pipeline.retrieval import retriever

    models_dir = small_run / "artifacts" / "models"
    fitted = retriever.load(retriever.path("random", models_dir))
    two_stages = {
        name: load_scorer(name, "random", models_dir, fitted, data.movies) for name in config.TWO_STAGE_MODELS
    }
    made = []
    user_lists = candidates.user_lists
    monkeypatch.setattr(candidates, "user_lists", lambda *args, **kw: made.append(1) or user_lists(*args, **kw))
    results = evaluate.evaluate_two_stages(two_stages, data, chunk_users=SMALL_CHUNK)
    test_users = data.test["user_id"].nunique()
    assert len(made) == -(-test_users // SMALL_CHUNK)  # one set of lists per chunk, not one per ranker
    for name, (_, predictions, top) in results.items():
        assert predictions is None
        assert top["user_id"].nunique() == test_users and (top.groupby("user_id").size() == config.TOP_N).all()
        rated = top.merge(data.train[["user_id", "movie_id"]], on=["user_id", "movie_id"])
        assert rated.empty, f"{name} recommends a movie the user rated in training"


def test_test_rows_are_scored_in_their_own_order_with_histories_from_their_users_training_rows(data):
    """A score function with a history field, as a 14-field model with one: its scores must equal those of all
    test rows scored at once with their histories built from every training row."""

    def score_fn(inputs):
        return inputs["movie_id"] * 1000.0 + inputs["history"].sum(axis=1) + 0.5 * inputs["user_id"]

    score_fn.history_fields = {"history": (5, 1)}
    at_once = score_rows(
        score_fn, data.test, {"history": history.row_histories(data.test, data.train, len(data.users), 5, 1)}
    )
    np.testing.assert_array_equal(evaluate.test_row_scores(score_fn, data, chunk_users=SMALL_CHUNK), at_once)


def test_most_popular_predictions_are_each_test_movies_liked_training_count(data):
    result, predictions, top = evaluate.evaluate_scorer(
        evaluate.baseline_score_fn("most_popular", data.train), data, evaluate.test_users(data), chunk_users=SMALL_CHUNK
    )
    likes = data.train[data.train["label"] == 1].groupby("movie_id").size()
    expected = likes.reindex(data.test["movie_id"]).fillna(0).to_numpy(np.float64)
    np.testing.assert_array_equal(predictions["score"].to_numpy(), expected)
    pd.testing.assert_frame_equal(
        predictions.drop(columns="score"), data.test[["user_id", "movie_id", "rating", "label"]]
    )
    assert result["full_catalog"]["users"] == data.test.loc[data.test["label"] == 1, "user_id"].nunique()


def synthetic_copy(small_run, tmp_path):
    """The small run's processed data, marked SYNTHETIC as pipeline.data.synth marks its sets."""
    import shutil

    processed = tmp_path / "synthetic" / "processed"
    shutil.copytree(small_run / "data" / "processed", processed)
    (processed / MARKER).write_text("# SYNTHETIC DATA: not MovieLens\n")
    return processed


def test_evaluate_one_model_of_synthetic_data_and_report_it_as_synthetic(small_run, tmp_path):
    from pipeline.cli import app

    processed, models = synthetic_copy(small_run, tmp_path), small_run / "artifacts" / "models"
    out = tmp_path / "out"
    folders = ["--processed-dir", str(processed), "--models-dir", str(models), "--out-dir", str(out)]
    result = CliRunner().invoke(app, ["evaluate", "--model", "autoint_mlp_two_stage", *folders])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("SYNTHETIC")
    results = json.loads((out / "metrics.json").read_text())
    assert results["synthetic"] is True and results["dataset"].startswith("SYNTHETIC")
    assert list(results["models"]) == ["autoint_mlp_two_stage"] and "temporal" not in results
    assert set(results["baselines"]) == {"random", "most_popular", "positive_rate", "ease", "als"}
    assert "| AutoInt+MLP (two-stage) | random |" in result.stdout.split("vs most popular")[1]

    result = CliRunner().invoke(app, ["report", *folders])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert report.startswith("# SYNTHETIC DATA") and "not MovieLens" in report.splitlines()[2]
    assert "## Against the original project's published table" not in report  # ML-1M's: nothing to compare
    assert "## Training" in report and "AutoInt+MLP (two-stage) | random |" in report
    comparison = report.split("### Against retrieval alone and most popular")[1].split("###")[0]
    ours = next(line for line in comparison.splitlines() if line.startswith("| AutoInt+MLP (two-stage)"))
    recall = results["models"]["autoint_mlp_two_stage"]["full_catalog"]["recall@10"]
    ease = results["baselines"]["ease"]["full_catalog"]["recall@10"]
    assert f"| {recall:.4f} |" in ours and f"{(recall / ease - 1) * 100:+.1f} %" in ours

    real = (small_run / "artifacts" / "report.md").read_text()
    assert "SYNTHETIC" not in real and real.startswith("# Evaluation report")


def test_an_unknown_model_is_refused_and_an_untrained_one_named(small_run, tmp_path):
    from pipeline.cli import app

    folders = ["--processed-dir", str(small_run / "data" / "processed"), "--out-dir", str(tmp_path)]
    refused = CliRunner().invoke(app, ["evaluate", "--model", "autoint_oracle", *folders])
    assert refused.exit_code == 2 and not (tmp_path / "metrics.json").exists()
    untrained = CliRunner().invoke(
        app, ["evaluate", "--model", "autoint_tuned", *folders, "--models-dir", str(small_run / "artifacts" / "models")]
    )
    assert untrained.exit_code == 2 and "not trained yet: autoint_tuned (random)" in untrained.stderr
    assert len(untrained.stderr.strip().splitlines()) == 1
