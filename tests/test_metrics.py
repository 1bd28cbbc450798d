"""Metrics, baselines and the reproduction check against values computed by hand."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score
from typer.testing import CliRunner

from pipeline import baselines, check_repro, config, metrics

L = math.log


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "label", "score"])


def test_seed_protocol_uses_uncapped_idcg_and_a_recall_hit_rate():
    # User 1: 12 rows, 11 positives; top 10 by score are rows 0..9, of which row 3 is negative.
    labels = [1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    rows = [(1, lab, 1.0 - i / 100) for i, lab in enumerate(labels)]
    # User 2: 3 rows (fewer than 10), positive ranked second.
    rows += [(2, 0, 0.9), (2, 1, 0.5), (2, 0, 0.1)]
    # User 3: no positives: left out.
    rows += [(3, 0, 0.3), (3, 0, 0.2)]
    result = metrics.seed_protocol(frame(rows), k=10)
    dcg1 = sum(1 / L(i + 2) for i in range(10) if i != 3)
    idcg1 = sum(1 / L(i + 2) for i in range(11))  # all 11 positives, not capped at 10
    ndcg2 = (1 / L(3)) / (1 / L(2))
    assert result["users"] == 2
    assert result["ndcg@10"] == pytest.approx((dcg1 / idcg1 + ndcg2) / 2)
    assert result["hit_rate@10"] == pytest.approx((9 / 11 + 1 / 1) / 2)


def test_seed_protocol_ties_keep_input_order():
    tied = frame([(1, 0, 0.5), (1, 1, 0.5)])
    assert metrics.seed_protocol(tied, k=1)["hit_rate@1"] == 0.0
    swapped = frame([(1, 1, 0.5), (1, 0, 0.5)])
    assert metrics.seed_protocol(swapped, k=1)["hit_rate@1"] == 1.0


def test_rated_metrics_capped_ndcg_auc_logloss():
    labels = [1] * 12 + [0]
    rows = frame([(1, lab, 1.0 - i / 100) for i, lab in enumerate(labels)] + [(2, 0, 0.8), (2, 1, 0.2)])
    result = metrics.rated_metrics(rows, k=10)
    assert result["ndcg@10"] == pytest.approx((1.0 + (1 / L(3)) / (1 / L(2))) / 2)
    assert result["auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]))
    assert result["logloss"] == pytest.approx(log_loss(rows["label"], rows["score"]))
    counts = rows.assign(score=rows["score"] * 100)
    assert metrics.rated_metrics(counts)["logloss"] is None


def test_full_catalog_metrics():
    top = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "rank": [1, 2, 3, 1, 2, 3], "movie_id": [10, 11, 12, 20, 21, 22]})
    relevant = pd.DataFrame({"user_id": [1, 1, 2, 3], "movie_id": [11, 99, 77, 5]})
    result = metrics.full_catalog_metrics(top, relevant, k=3)
    ndcg1 = (1 / L(3)) / (1 / L(2) + 1 / L(3))
    assert result["users"] == 3  # user 3 has no list at all: zero hits
    assert result["recall@3"] == pytest.approx((1 / 2) / 3)
    assert result["ndcg@3"] == pytest.approx(ndcg1 / 3)
    assert result["hr@3"] == pytest.approx(1 / 3)


def test_baselines_by_hand():
    train = pd.DataFrame({"movie_id": [1, 1, 1, 2, 3], "label": [1, 1, 0, 0, 1]})
    assert baselines.popularity(train).to_dict() == {1: 2, 2: 0, 3: 1}
    g = 3 / 5
    rate = baselines.positive_rate(train, strength=2)
    assert rate[1] == pytest.approx((2 + 2 * g) / (3 + 2))
    popular = baselines.fit_baseline("most_popular", train)
    assert list(popular(np.array([0, 0]), np.array([1, 42]))) == [2.0, 0.0]
    smoothed = baselines.fit_baseline("positive_rate", train)
    assert smoothed(np.array([0]), np.array([42]))[0] == pytest.approx(g)
    random = baselines.fit_baseline("random", train)
    users, movies = np.arange(100), np.arange(100) % 7
    assert (random(users, movies)[:10] == random(users[:10], movies[:10])).all()
    assert 0.3 < random(users, movies).mean() < 0.7


def metrics_file(tmp_path, shift=0.0, drop=None):
    data = {"models": {name: {"seed_protocol": {metric: value + shift for metric, value in table.items()}}
                       for name, table in config.SEED_TABLE.items() if name != drop}}
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("shift, drop, code", [(0.004, None, 0), (-0.006, None, 1), (0.0, "autoint_mlp", 1)])
def test_check_repro(tmp_path, shift, drop, code):
    path = metrics_file(tmp_path, shift, drop)
    assert bool(check_repro.check(json.loads(path.read_text()))) == (code != 0)
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["check-repro", "--metrics", str(path)])
    assert result.exit_code == code


def test_check_repro_missing_file(tmp_path):
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["check-repro", "--metrics", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "not found" in result.output
