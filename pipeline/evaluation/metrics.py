"""Ranking and classification metrics: the reference project's protocol and the standard ones.

Every function takes plain frames/arrays and returns plain numbers, so models and baselines go
through the same code. Three protocols are computed, because they answer different questions:

- `reference_protocol`: the original project's numbers, reproduced exactly (including its quirks), so the
  published table can be checked.
- `rated_metrics`: AUC, log loss and capped NDCG@k on the rated test rows.
- `full_catalog_metrics`: Recall/NDCG/HR@k of top-k lists drawn from the whole catalogue.

Ranking within a user is always by score descending. Ties are broken deterministically: in
`reference_protocol` and `rated_metrics` tied rows keep their input order (stable sort); in
`top_k_from_scores` tied candidates are ordered by movie_id ascending.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import TOP_N

# The protocols and the metrics each reports.
PROTOCOLS = {
    "reference_protocol": ("ndcg@10", "hit_rate@10"),
    "rated": ("auc", "logloss", "ndcg@10"),
    "full_catalog": ("recall@10", "ndcg@10", "hr@10"),
}

LOGLOSS_EPS = 1e-7


def _rank_within_user(user_ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows by (user_id, score desc, input order).

    Returns (order, group, position): `order` permutes the input into that order, `group` is a
    0-based user index per sorted row and `position` the 0-based rank of the row within its user.
    np.lexsort is stable, so tied rows keep their input order.
    """
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), user_ids))
    sorted_users = user_ids[order]
    starts_group = np.empty(len(sorted_users), dtype=bool)
    starts_group[:1] = True
    starts_group[1:] = sorted_users[1:] != sorted_users[:-1]
    group = np.cumsum(starts_group) - 1
    position = np.arange(len(sorted_users)) - np.flatnonzero(starts_group)[group]
    return order, group, position


def _ideal_dcg(n_relevant: np.ndarray) -> np.ndarray:
    """IDCG for n relevant items: sum_{i=0..n-1} 1/ln(i+2) (0 for n = 0)."""
    largest = int(n_relevant.max(initial=0))
    cumulative = np.concatenate(([0.0], np.cumsum(1.0 / np.log(np.arange(2, largest + 2)))))
    return cumulative[n_relevant]


def _validated(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    user_ids = rows["user_id"].to_numpy()
    labels = rows["label"].to_numpy()
    scores = rows["score"].to_numpy(dtype=np.float64)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("label must be 0 or 1")
    if np.isnan(scores).any():
        raise ValueError("score contains NaN")
    return user_ids, labels.astype(np.int64), scores


def _per_user_ranking(
    user_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user (sorted by user_id): DCG@k, hits in the top k, and number of positives."""
    if len(user_ids) == 0:
        raise ValueError("no rows to evaluate")
    order, group, position = _rank_within_user(user_ids, scores)
    relevance = labels[order]
    in_top = position < k
    n_users = group[-1] + 1
    dcg = np.bincount(group, weights=relevance * in_top / np.log(position + 2.0), minlength=n_users)
    hits = np.bincount(group, weights=relevance * in_top, minlength=n_users)
    positives = np.bincount(group, weights=relevance, minlength=n_users).astype(np.int64)
    return dcg, hits, positives


def reference_protocol(rows: pd.DataFrame, k: int = TOP_N) -> dict:
    """The seed project's ranking protocol over rated test rows [user_id, label, score].

    For each user with at least one positive row, that user's rows are ranked by score descending
    (ties keep input order) and the top k are taken. With rel_i the label at 0-based rank i and
    P the user's number of positives:
      NDCG@k     = sum_{i<k} rel_i / ln(i+2)  /  sum_{i<P} 1 / ln(i+2)   (IDCG NOT capped at k)
      hit_rate@k = (positives in the top k) / P                          (a recall, not a hit rate)
    Both are averaged over those users. Returns {"ndcg@k", "hit_rate@k", "users"}.
    """
    dcg, hits, positives = _per_user_ranking(*_validated(rows), k)
    keep = positives > 0
    if not keep.any():
        raise ValueError("no user has a positive row")
    return {
        f"ndcg@{k}": float(np.mean(dcg[keep] / _ideal_dcg(positives[keep]))),
        f"hit_rate@{k}": float(np.mean(hits[keep] / positives[keep])),
        "users": int(keep.sum()),
    }


def rated_metrics(rows: pd.DataFrame, k: int = TOP_N) -> dict:
    """Standard metrics on rated test rows [user_id, label, score].

      auc     = sklearn roc_auc_score over all rows (None if only one class is present)
      logloss = sklearn log_loss with scores clipped to [1e-7, 1 - 1e-7]; None when any score lies
                outside [0, 1] (e.g. popularity counts), where a log loss means nothing
      NDCG@k  = sum_{i<k} rel_i / ln(i+2)  /  sum_{i<min(P,k)} 1 / ln(i+2), per user with P >= 1
                positives (ties keep input order), averaged over those users
    Returns {"auc", "logloss", "ndcg@k", "users"}.
    """
    # Imported here: scikit-learn takes ~0.8 s to import, which every other `python -m pipeline` command would pay.
    from sklearn.metrics import log_loss, roc_auc_score

    user_ids, labels, scores = _validated(rows)
    dcg, _, positives = _per_user_ranking(user_ids, labels, scores, k)
    keep = positives > 0
    if not keep.any():
        raise ValueError("no user has a positive row")
    both_classes = labels.min() != labels.max()
    bounded = scores.min() >= 0.0 and scores.max() <= 1.0
    return {
        "auc": float(roc_auc_score(labels, scores)) if both_classes else None,
        "logloss": (
            float(log_loss(labels, np.clip(scores, LOGLOSS_EPS, 1 - LOGLOSS_EPS), labels=[0, 1])) if bounded else None
        ),
        f"ndcg@{k}": float(np.mean(dcg[keep] / _ideal_dcg(np.minimum(positives[keep], k)))),
        "users": int(keep.sum()),
    }


def full_catalog_metrics(top: pd.DataFrame, relevant: pd.DataFrame, k: int = TOP_N) -> dict:
    """Metrics of top-k lists [user_id, rank (1-based), movie_id] against relevant [user_id, movie_id].

    For each user with R >= 1 relevant movies (users missing from `top` have zero hits):
      Recall@k = hits in ranks 1..k / R
      NDCG@k   = sum over hits of 1 / ln(rank+1)  /  sum_{i<min(R,k)} 1 / ln(i+2)
      HR@k     = 1 if at least one hit else 0
    averaged over those users; users only in `top` are ignored. Duplicate relevant rows count once.
    Returns {"recall@k", "ndcg@k", "hr@k", "users"}.
    """
    relevant = relevant[["user_id", "movie_id"]].drop_duplicates()
    if relevant.empty:
        raise ValueError("no relevant movies")
    listed = top.loc[top["rank"] <= k, ["user_id", "rank", "movie_id"]]
    if listed.duplicated(["user_id", "movie_id"]).any():
        raise ValueError("a movie appears twice in one user's top list")

    users, relevant_group = np.unique(relevant["user_id"].to_numpy(), return_inverse=True)
    n_relevant = np.bincount(relevant_group, minlength=len(users))
    hit_rows = listed.merge(relevant, on=["user_id", "movie_id"], how="inner")
    hit_group = np.searchsorted(users, hit_rows["user_id"].to_numpy())
    hits = np.bincount(hit_group, minlength=len(users))
    dcg = np.bincount(hit_group, weights=1.0 / np.log(hit_rows["rank"].to_numpy() + 1.0), minlength=len(users))
    return {
        f"recall@{k}": float(np.mean(hits / n_relevant)),
        f"ndcg@{k}": float(np.mean(dcg / _ideal_dcg(np.minimum(n_relevant, k)))),
        f"hr@{k}": float(np.mean(hits > 0)),
        "users": int(len(users)),
    }
