"""The two train/test splits of the ratings: the reference's random 80/20 and a per-user temporal holdout
(each user's latest 20 % are test), as row numbers (what the preprocess stage keeps) or as frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import config


def random_rows(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's random split as row numbers: scikit-learn's train_test_split (20 % test, seed 42) of
    the numbers 0..n_rows-1, which draws the same permutation as the split of the rows themselves."""
    # Imported here: scikit-learn takes ~0.8 s to import and only the preprocess stage needs it.
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(n_rows), test_size=config.TEST_SIZE, random_state=config.SPLIT_SEED)
    return train, test


def temporal_rows(user: np.ndarray, timestamp: np.ndarray, test_size: float = config.TEST_SIZE):
    """Per-user temporal holdout as row numbers (train, test), each sorted by user, then time: each user's
    latest `test_size` of ratings (at least one) are test. Ratings with the same timestamp keep their order."""
    order = np.lexsort((timestamp, user))  # stable: ties keep row order
    sorted_user = user[order]
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    del sorted_user
    counts = np.diff(np.r_[starts, len(order)])
    n_test = np.maximum(1, np.floor(counts * test_size)).astype(np.int64)
    # Sorted, each user's ratings are one run; its last n_test are test.
    is_test = np.arange(len(order)) >= np.repeat(starts + counts - n_test, counts)
    return order[~is_test], order[is_test]


def split_temporal(frame: pd.DataFrame, test_size: float = config.TEST_SIZE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user temporal holdout of a frame's rows: each user's latest `test_size` of ratings (at least one)
    are test.

    A random split lets a user's later ratings teach the model about earlier ones; this one does not.
    Ratings with the same timestamp keep their frame order.
    """
    train, test = temporal_rows(frame["user_id"].to_numpy(), frame["timestamp"].to_numpy(), test_size)
    return frame.iloc[train].reset_index(drop=True), frame.iloc[test].reset_index(drop=True)
