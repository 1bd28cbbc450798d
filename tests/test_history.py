"""The history field: latest liked (or disliked) movies, shifted by one, never a row's own movie."""

import numpy as np
import pandas as pd

from pipeline.data import history

ROWS = pd.DataFrame(
    {
        "user_id": [0, 0, 0, 0, 1, 2],
        "movie_id": [5, 6, 7, 8, 3, 4],
        "label": [1, 1, 0, 1, 1, 0],
        "timestamp": [30, 10, 20, 40, 5, 5],
    }
)


def test_user_histories_are_the_latest_movies_oldest_first_shifted_by_one():
    # user 0 liked 6 (t10), 5 (t30), 8 (t40); 7 was not liked. The latest two, oldest first: 5, 8 → 6, 9.
    np.testing.assert_array_equal(history.user_histories(ROWS, n_users=3, length=2), [[6, 9], [0, 4], [0, 0]])
    np.testing.assert_array_equal(history.user_histories(ROWS, 3, 2, label=0), [[0, 8], [0, 0], [0, 5]])
    assert history.user_histories(ROWS, 3, 0).shape == (3, 0)


def test_a_rows_own_movie_is_never_in_its_history():
    rows = pd.DataFrame({"user_id": [0, 0, 0, 1], "movie_id": [8, 6, 7, 3]})
    out = history.row_histories(rows, ROWS, n_users=3, length=2)
    # user 0's liked movies by time: 6, 5, 8. Row movie 8: the rest, latest two: 6, 5. Row 6: 5, 8.
    # Row 7 (not liked): the latest two, 5, 8. User 1, row 3: nothing else liked.
    np.testing.assert_array_equal(out, [[7, 6], [6, 9], [6, 9], [0, 0]])


def test_row_histories_on_random_data_match_a_loop():
    rng = np.random.default_rng(0)
    source = pd.DataFrame(
        {
            "user_id": rng.integers(0, 20, 400),
            "movie_id": rng.integers(0, 50, 400),
            "label": rng.integers(0, 2, 400),
            "timestamp": rng.permutation(400),
        }
    )
    source = source.drop_duplicates(["user_id", "movie_id"])
    out = history.row_histories(source, source, 20, 4)
    for row, (user, movie) in enumerate(zip(source["user_id"], source["movie_id"])):
        mine = source[(source["user_id"] == user) & (source["label"] == 1) & (source["movie_id"] != movie)]
        latest = mine.sort_values("timestamp")["movie_id"].to_numpy()[-4:] + 1
        np.testing.assert_array_equal(out[row], np.concatenate([np.zeros(4 - len(latest), int), latest]))
