"""A user's latest liked (or disliked) movies as a fixed-length field: what the history VarLenSparseFeat reads.

Codes are movie codes + 1, oldest first, right-aligned, 0 padding on the left (DeepCTR masks index 0).
At training time a row's own movie is never in its own history; at test time the history comes from the
training rows only, so a test movie is never in it either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import config


def user_histories(rows: pd.DataFrame, n_users: int, length: int, label: int = 1) -> np.ndarray:
    """(n_users, length): each user's latest `length` movies of `rows` with that label (1 liked, 0 not),
    oldest first, right-aligned, as movie codes + 1 (0 pads). Ties in time keep the order of `rows`."""
    history = np.zeros((n_users, length), dtype=np.int32)
    if length == 0:
        return history
    chosen = rows[rows["label"] == label].sort_values(["user_id", "timestamp"], kind="stable")
    from_end = chosen.groupby("user_id").cumcount(ascending=False).to_numpy()
    keep = from_end < length
    history[chosen["user_id"].to_numpy()[keep], length - 1 - from_end[keep]] = chosen["movie_id"].to_numpy()[keep] + 1
    return history


def row_histories(rows: pd.DataFrame, source: pd.DataFrame, n_users: int, length: int, label: int = 1) -> np.ndarray:
    """(len(rows), length): for each row (user_id, movie_id), that user's latest `length` movies of
    `source` with the label, leaving out the row's own movie."""
    wider = user_histories(source, n_users, length + 1, label)[rows["user_id"].to_numpy()]
    own = wider == (rows["movie_id"].to_numpy()[:, None] + 1)
    # A stable sort on "is the own movie" moves it to the front; the last `length` columns are the rest.
    order = np.argsort(~own, axis=1, kind="stable")
    return np.take_along_axis(wider, order, axis=1)[:, 1:]


def latest_context(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per user (code), the rating-time context fields of that user's most recent rating."""
    latest = ratings.sort_values(["user_id", "timestamp"], kind="stable").groupby("user_id").tail(1)
    return latest.set_index("user_id")[list(config.CONTEXT_FIELDS)]
