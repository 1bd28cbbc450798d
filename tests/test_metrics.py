"""Ranking and classification metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.metrics import full_catalog_metrics, rated_metrics, reference_protocol

LN = math.log


def frame(*users: tuple[int, list[tuple[int, float]]]) -> pd.DataFrame:
    """Rows [user_id, label, score] from (user, [(label, score), ...]) in the given order."""
    records = [(user, label, score) for user, rows in users for label, score in rows]
    return pd.DataFrame(records, columns=["user_id", "label", "score"])


def idcg(n: int) -> float:
    return sum(1 / LN(i + 2) for i in range(n))


# --- reference protocol ---------------------------------------------------------------------------------


def test_reference_protocol_uncapped_idcg_recall_hit_rate_and_users_without_positives_excluded():
    rows = frame(
        (3, [(0, 0.9)]),
        (1, [(1, 0.9), (0, 0.8)]),
        (2, [(0, 0.5), (0, 0.4)]),  # no positive: excluded
        (3, [(1, 0.2)]),
        (1, [(1, 0.7)]),
    )
    result = reference_protocol(rows, k=2)
    # user 1 ranks labels [1, 0 | 1]: DCG 1/ln2, two positives; user 3 ranks [0, 1]: DCG 1/ln3, one.
    user1 = (1 / LN(2)) / (1 / LN(2) + 1 / LN(3))
    user3 = (1 / LN(3)) / (1 / LN(2))
    assert result == {
        "ndcg@2": pytest.approx((user1 + user3) / 2),
        "hit_rate@2": pytest.approx((1 / 2 + 1) / 2),
        "users": 2,
    }


def test_reference_protocol_key_names_follow_k_and_default_is_ten():
    rows = frame((1, [(1, 0.3), (0, 0.2)]))
    assert set(reference_protocol(rows)) == {"ndcg@10", "hit_rate@10", "users"}
    assert set(reference_protocol(rows, k=5)) == {"ndcg@5", "hit_rate@5", "users"}


def test_reference_protocol_user_with_fewer_than_k_rows():
    rows = frame((7, [(0, 0.1), (1, 0.5), (0, 0.8)]))  # ranked labels [0, 1, 0]
    result = reference_protocol(rows, k=10)
    assert result["ndcg@10"] == pytest.approx(LN(2) / LN(3))
    assert result["hit_rate@10"] == pytest.approx(1.0)


def test_reference_protocol_more_than_k_positives_is_below_one_because_idcg_is_not_capped():
    rows = frame((1, [(1, 1.0 - i / 100) for i in range(12)]))  # a perfect ranking of 12 positives
    result = reference_protocol(rows, k=10)
    assert result["ndcg@10"] == pytest.approx(idcg(10) / idcg(12))
    assert result["ndcg@10"] < 0.99
    assert result["hit_rate@10"] == pytest.approx(10 / 12)
    assert rated_metrics(rows, k=10)["ndcg@10"] == pytest.approx(1.0)


def test_reference_protocol_more_than_k_positives_with_a_miss_in_the_top_k():
    labels = [1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]  # 11 positives; rank 3 (0-based) is the negative
    rows = frame((1, [(label, 1.0 - i / 100) for i, label in enumerate(labels)]))
    result = reference_protocol(rows, k=10)
    dcg = sum(1 / LN(i + 2) for i in range(10) if i != 3)
    assert result["ndcg@10"] == pytest.approx(dcg / idcg(11))
    assert result["hit_rate@10"] == pytest.approx(9 / 11)


def test_reference_protocol_ties_keep_input_order():
    negative_first = frame((1, [(0, 0.5), (1, 0.5), (1, 0.5)]))
    positive_first = frame((1, [(1, 0.5), (1, 0.5), (0, 0.5)]))
    assert reference_protocol(negative_first, k=1) == {"ndcg@1": 0.0, "hit_rate@1": 0.0, "users": 1}
    result = reference_protocol(positive_first, k=1)
    assert result["ndcg@1"] == pytest.approx((1 / LN(2)) / idcg(2))
    assert result["hit_rate@1"] == pytest.approx(0.5)


def test_reference_protocol_tie_below_a_higher_score():
    # ranked: 0.9 (neg), then the tied 0.5s in input order: neg, pos
    rows = frame((1, [(0, 0.5), (0, 0.9), (1, 0.5)]))
    assert reference_protocol(rows, k=2)["hit_rate@2"] == 0.0
    assert reference_protocol(rows, k=3)["ndcg@3"] == pytest.approx((1 / LN(4)) / idcg(1))


def test_reference_protocol_rejects_non_binary_labels_and_no_positives():
    with pytest.raises(ValueError):
        reference_protocol(frame((1, [(2, 0.5)])))
    with pytest.raises(ValueError):
        reference_protocol(frame((1, [(0, 0.5)])))


def reference(rows: pd.DataFrame, k: int, capped: bool) -> tuple[float, float]:
    """The definition, one user at a time with a stable sort."""
    ndcgs, recalls = [], []
    for _, user in rows.groupby("user_id", sort=False):
        labels = user["label"].to_numpy()
        if labels.sum() == 0:
            continue
        ranked = labels[np.argsort(-user["score"].to_numpy(), kind="stable")][:k]
        dcg = sum(rel / LN(i + 2) for i, rel in enumerate(ranked))
        positives = int(labels.sum())
        ndcgs.append(dcg / idcg(min(positives, k) if capped else positives))
        recalls.append(ranked.sum() / positives)
    return float(np.mean(ndcgs)), float(np.mean(recalls))


def test_reference_protocol_and_rated_ndcg_match_a_per_user_reference_on_random_data():
    rng = np.random.default_rng(3)
    n = 3000
    rows = pd.DataFrame(
        {
            "user_id": rng.integers(1, 120, n),
            "label": (rng.random(n) < 0.55).astype(int),
            "score": rng.integers(0, 8, n) / 8,  # coarse scores: many ties
        }
    )
    ndcg, recall = reference(rows, 10, capped=False)
    result = reference_protocol(rows)
    assert result["ndcg@10"] == pytest.approx(ndcg)
    assert result["hit_rate@10"] == pytest.approx(recall)
    assert rated_metrics(rows)["ndcg@10"] == pytest.approx(reference(rows, 10, capped=True)[0])


# --- rated metrics ---------------------------------------------------------------------------------


def test_rated_ndcg_caps_idcg_at_k():
    rows = frame((1, [(1, 0.9), (0, 0.8), (1, 0.7), (1, 0.6), (0, 0.5)]))
    assert rated_metrics(rows, k=2)["ndcg@2"] == pytest.approx((1 / LN(2)) / idcg(2))
    assert reference_protocol(rows, k=2)["ndcg@2"] == pytest.approx((1 / LN(2)) / idcg(3))


def test_rated_auc_and_logloss_by_hand():
    # Positives score 0.9, 0.4 and 0.0; negatives 0.6 and 0.1. Of the 3 × 2 (positive, negative) pairs
    # the positive is higher in (0.9, 0.6), (0.9, 0.1), (0.4, 0.1): AUC 3/6.
    rows = frame((1, [(1, 0.9), (0, 0.6)]), (2, [(1, 0.4), (0, 0.1), (1, 0.0)]))
    result = rated_metrics(rows)
    assert result["auc"] == pytest.approx(3 / 6)
    # Logloss: mean of -ln(p) over positives and -ln(1-p) over negatives; the 0.0 is clipped to 1e-7.
    expected = -(LN(0.9) + LN(1 - 0.6) + LN(0.4) + LN(1 - 0.1) + LN(1e-7)) / 5
    assert result["logloss"] == pytest.approx(expected, rel=1e-6)
    assert math.isfinite(result["logloss"]) and result["users"] == 2


def test_rated_auc_counts_a_tie_between_a_positive_and_a_negative_as_half():
    rows = frame((1, [(1, 0.5), (0, 0.5), (1, 0.7), (0, 0.2)]))
    # pairs: (0.5, 0.5) tie = 1/2, (0.5, 0.2) = 1, (0.7, 0.5) = 1, (0.7, 0.2) = 1 → 3.5 / 4
    assert rated_metrics(rows)["auc"] == pytest.approx(3.5 / 4)


def test_rated_logloss_is_none_for_unbounded_scores_but_auc_is_kept():
    rows = frame((1, [(1, 40.0), (0, 3.0), (1, 12.0)]), (2, [(0, 25.0), (1, 7.0)]))
    result = rated_metrics(rows)
    assert result["logloss"] is None
    assert result["auc"] == pytest.approx(4 / 6)


def test_rated_auc_is_none_with_a_single_class():
    assert rated_metrics(frame((1, [(1, 0.2), (1, 0.4)])))["auc"] is None


# --- full catalogue --------------------------------------------------------------------------------


def test_full_catalog_metrics_by_hand():
    top = pd.DataFrame(
        [
            (1, 1, 10),
            (1, 2, 20),
            (1, 3, 30),
            (1, 4, 40),  # rank 4 is past k = 3
            (2, 1, 10),
            (2, 2, 20),
            (2, 3, 30),
            (4, 1, 10),
        ],  # user 4 has nothing relevant: ignored
        columns=["user_id", "rank", "movie_id"],
    )
    relevant = pd.DataFrame(
        [
            (1, 20),
            (1, 40),
            (1, 20),  # a duplicate counts once
            (2, 50),
            (3, 10),
        ],  # user 3 is absent from top: zero hits
        columns=["user_id", "movie_id"],
    )
    result = full_catalog_metrics(top, relevant, k=3)
    user1_ndcg = (1 / LN(3)) / idcg(2)
    assert result == {
        "recall@3": pytest.approx((1 / 2) / 3),
        "ndcg@3": pytest.approx(user1_ndcg / 3),
        "hr@3": pytest.approx(1 / 3),
        "users": 3,
    }


def test_full_catalog_perfect_list_and_capped_idcg():
    top = pd.DataFrame({"user_id": 1, "rank": [1, 2], "movie_id": [5, 6]})
    relevant = pd.DataFrame({"user_id": 1, "movie_id": [5, 6, 7, 8]})
    result = full_catalog_metrics(top, relevant, k=2)
    assert result["ndcg@2"] == pytest.approx(1.0)
    assert result["recall@2"] == pytest.approx(0.5)
    assert result["hr@2"] == 1.0


def test_full_catalog_rejects_a_movie_twice_in_one_list():
    top = pd.DataFrame({"user_id": 1, "rank": [1, 2], "movie_id": [5, 5]})
    with pytest.raises(ValueError):
        full_catalog_metrics(top, pd.DataFrame({"user_id": [1], "movie_id": [5]}))
