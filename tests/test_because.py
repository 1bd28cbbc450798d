"""Because you liked: each recommended movie names up to config.BECAUSE_N of the person's liked movies whose terms
add most to its retrieval score (EASE: B[j, i]; ALS: the fold-in's term), in the retrievers, in the core and in
the terminal. Every check recomputes retrieval itself: a named movie's removal from the liked row must lower the
candidate's score, and the order is that of the leave-one-out drops (EASE) or of implicit's own `explain` (ALS).
"""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from typer.testing import CliRunner

from pipeline import config
from pipeline.cli import app
from pipeline.data.processed import load_processed
from pipeline.retrieval import als, ease
from pipeline.serving.recommender import Recommender

# Little regularisation: some liked movies then score above alpha / (alpha - 1) themselves, where ALS's bare
# per-movie term and the effect of removing the movie part ways (als.py).
ALS_SETTINGS = {"factors": 8, "regularization": 1.0, "alpha": 10.0, "iterations": 15, "seed": 0}
K = config.BECAUSE_N
# float32 scores of a few dozen terms: differences below this are rounding, not order.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def processed(small_processed):
    return load_processed(small_processed, splits=("random",))


@pytest.fixture(scope="module", params=["ease", "als"])
def fitted(request, processed):
    n_users, n_movies = len(processed.users), len(processed.movies)
    if request.param == "ease":
        return ease.fit(processed.train, n_users, n_movies)
    return als.fit(processed.train, n_users, n_movies, ALS_SETTINGS)


def liked_row(movies, n_movies: int) -> sparse.csr_matrix:
    """One person's liked row: 1 at each of `movies` (codes)."""
    movies = np.asarray(movies, np.int64)
    return sparse.csr_matrix(
        (np.ones(len(movies), np.float32), (np.zeros(len(movies), np.int64), movies)), shape=(1, n_movies)
    )


def people(processed, count: int = 25):
    """(liked codes, rated codes) of the first `count` users who liked at least 4 training movies."""
    train = processed.train
    out = []
    for _, mine in train.groupby("user_id", sort=True):
        liked = mine.loc[mine["label"] == 1, "movie_id"].to_numpy(np.int64)
        if len(liked) >= 4:
            out.append((liked, mine["movie_id"].to_numpy(np.int64)))
        if len(out) == count:
            break
    return out


def candidates_of(fitted, liked, seen):
    """The 10 best movies not in `seen` by the liked row's scores, ranked here rather than by top_k."""
    scores = fitted.scores(liked_row(liked, fitted.n_movies))[0]
    scores[seen] = -np.inf
    return np.argsort(-scores, kind="stable")[:10]


def leave_one_out_drops(fitted, liked, movies) -> tuple[np.ndarray, np.ndarray]:
    """The liked row's scores of `movies`, and (len(liked), len(movies)) how much each falls when that one
    liked movie is removed from the row: retrieval recomputed through scores_at, not contribution terms.

    The row and its leave-one-out rows go through one scores_at call (each row is folded in from itself alone, so
    the scores are those of one call per row; ALS's fold-in costs ~40 ms a call, mostly fixed)."""
    n_movies = fitted.n_movies
    rows = sparse.vstack(
        [liked_row(liked, n_movies), *(liked_row(np.delete(liked, j), n_movies) for j in range(len(liked)))]
    )
    scores = fitted.scores_at(rows, np.broadcast_to(movies, (rows.shape[0], len(movies))))
    return scores[0], scores[0][None, :] - scores[1:]


def test_named_movies_are_liked_ones_and_removing_one_lowers_the_score(fitted, processed):
    named_any = 0
    for liked, seen in people(processed):
        movies = candidates_of(fitted, liked, seen)
        named = fitted.contributions(liked, movies, K)
        assert named.shape == (len(movies), K) and named.dtype == np.int64
        _, drops = leave_one_out_drops(fitted, liked, movies)
        for i, row in enumerate(named):
            shown = row[row >= 0]
            assert (row[len(shown) :] == -1).all()  # the padding comes last
            assert len(set(shown)) == len(shown) and np.isin(shown, liked).all()
            for movie in shown:
                assert drops[list(liked).index(movie), i] > 0, (fitted.kind, liked, movies[i], movie)
            named_any += len(shown)
    assert named_any > 0


def test_ease_names_the_largest_leave_one_out_drops_in_order(processed):
    fitted = ease.fit(processed.train, len(processed.users), len(processed.movies))
    fewer = 0
    for liked, seen in people(processed):
        # Every movie of the catalogue too, so that movies with few or no liked movies adding to them are in.
        for movies in (candidates_of(fitted, liked, seen), np.arange(fitted.n_movies)):
            named = fitted.contributions(liked, movies, K)
            full, drops = leave_one_out_drops(fitted, liked, movies)
            for i, row in enumerate(named):
                shown = [list(liked).index(movie) for movie in row[row >= 0]]
                named_drops = drops[shown, i]
                assert (np.diff(named_drops) <= TOLERANCE).all()  # largest first
                others = np.delete(drops[:, i], shown)
                if len(shown):
                    assert (others <= named_drops[-1] + TOLERANCE).all()  # no larger one left out
                if len(shown) < K:  # fewer named: removing any other liked movie does not lower the score
                    assert (others <= TOLERANCE).all()
                    fewer += 1
                # EASE's score is linear in the liked row: the drops are its terms and add up to it.
                assert drops[:, i].sum() == pytest.approx(full[i], abs=TOLERANCE)
    assert fewer > 0


def test_als_names_implicits_largest_explained_terms_but_none_whose_removal_raises_the_score(processed):
    """implicit's own `explain` splits ALS's score into one term per liked movie. With this little
    regularisation some liked movies score above alpha / (alpha - 1) themselves, and taking one of those out of
    the row raises a movie's score although its term is positive (als.py): such a movie is passed over."""
    fitted = als.fit(processed.train, len(processed.users), len(processed.movies), ALS_SETTINGS)
    explainer = als.implicit_model(ALS_SETTINGS["factors"], ALS_SETTINGS["regularization"], ALS_SETTINGS["alpha"])
    explainer.item_factors = fitted.item_factors
    passed_over = 0
    for liked, seen in people(processed):
        movies = candidates_of(fitted, liked, seen)
        named = fitted.contributions(liked, movies, K)
        full, drops = leave_one_out_drops(fitted, liked, movies)
        for i, movie in enumerate(movies):
            total, terms, _ = explainer.explain(0, liked_row(liked, fitted.n_movies), int(movie), N=len(liked))
            assert total == pytest.approx(full[i], rel=1e-4, abs=TOLERANCE)
            lowering = [other for other, term in terms if term > 0 and drops[list(liked).index(other), i] > 0]
            assert list(named[i][named[i] >= 0]) == lowering[:K]
            passed_over += sum(term > 0 and other not in lowering for other, term in terms[: K + 1])
    assert passed_over > 0


def test_fewer_are_named_when_fewer_add_and_equal_terms_go_to_the_first_listed():
    weights = np.zeros((7, 7), np.float32)
    weights[:4, 4] = [0.5, -0.2, 0.3, 0.1]  # three positive terms: 0, 2, 3
    weights[:4, 5] = [-0.1, -0.3, 0.0, 0.0]  # none
    weights[:4, 6] = [0.2, 0.2, -1.0, 0.0]  # two equal ones
    fitted = ease.Retrieval(weights, weights)
    np.testing.assert_array_equal(
        fitted.contributions(np.array([0, 1, 2, 3]), np.array([4, 5, 6]), 3), [[0, 2, 3], [-1, -1, -1], [0, 1, -1]]
    )
    np.testing.assert_array_equal(fitted.contributions(np.array([3, 2, 1, 0]), np.array([6]), 3), [[1, 0, -1]])
    np.testing.assert_array_equal(fitted.contributions(np.array([2]), np.array([4, 6]), 3), [[2, -1, -1], [-1] * 3])
    empty = fitted.contributions(np.array([], np.int64), np.array([4, 6]), 3)  # a user who liked nothing
    np.testing.assert_array_equal(empty, [[-1] * 3] * 2)


# --- The core and the terminal, on the small run -------------------------------------------------------------


@pytest.fixture(scope="module")
def rec(small_run):
    return Recommender.load(small_run / "data" / "processed", small_run / "artifacts" / "models")


@pytest.fixture(scope="module")
def raw(raw_dir):
    ratings = pd.read_csv(raw_dir / "ratings.dat", sep="::", engine="python", names=["user", "movie", "rating", "t"])
    movies = pd.read_csv(
        raw_dir / "movies.dat", sep="::", engine="python", names=["movie", "title", "genres"], encoding="latin-1"
    )
    return ratings, movies.set_index("movie")["title"]


def check_because(rec, top: pd.DataFrame, liked_ids: list[int], titles: pd.Series) -> int:
    """Every row's because names liked movies by ID and title, at most K, each of whose removal from the liked
    row lowers the row's retrieval score (recomputed), in the order of the retriever's terms with none larger left
    out (EASE's terms are its drops; ALS's order them, not the drops); returns how many were named."""
    fitted = rec.retrieval()
    liked = rec.movie_codes(liked_ids)
    movies = rec.movie_codes(list(top["movie_id"]))
    _, drops = leave_one_out_drops(fitted, liked, movies)
    terms = fitted.contribution_terms(np.asarray(liked, np.int64), np.asarray(movies, np.int64))
    count = 0
    for i, because in enumerate(top["because"]):
        assert len(because) <= K
        ids = [movie["movie_id"] for movie in because]
        assert set(ids) <= set(liked_ids) and len(set(ids)) == len(ids)
        assert [movie["title"] for movie in because] == list(titles[ids])
        shown = [liked_ids.index(movie) for movie in ids]
        assert (drops[shown, i] > 0).all()
        named_terms, others = terms[shown, i], np.delete(terms[:, i], shown)
        assert (named_terms > 0).all() and (np.diff(named_terms) <= TOLERANCE).all()
        assert (others <= (named_terms[-1] if len(ids) == K else 0) + TOLERANCE).all()  # none larger left out
        count += len(ids)
    return count


def test_a_users_answer_names_their_liked_movies_whether_precomputed_or_scored(rec, raw):
    ratings, titles = raw
    named = 0
    for user_id in (3, 7, 150):
        mine = ratings[ratings["user"] == user_id].sort_values("t", kind="stable")
        # Oldest first, as the core lists them (the order only decides equal terms).
        liked_ids = [int(movie) for movie in mine.loc[mine["rating"] >= config.LIKE_THRESHOLD, "movie"]]
        for top in (rec.recommend(user_id), rec.recommend(user_id, month=1)):
            named += check_because(rec, top, liked_ids, titles)
        assert all(because == [] for because in rec.recommend(user_id, mode="reference")["because"])
    assert named > 0


def test_a_new_persons_answer_names_movies_of_the_list_given(rec, raw):
    _, titles = raw
    liked_ids = [int(movie) for movie in rec.movies_by_likes()["movie_id"].iloc[[0, 4, 9, 15, 30]]]
    top = rec.recommend_for_liked(liked_ids, n=10)
    assert check_because(rec, top, liked_ids, titles) > 0


def run(small_run, *args):
    folders = ["--processed-dir", str(small_run / "data" / "processed")]
    return CliRunner().invoke(
        app, ["recommend", *args, *folders, "--models-dir", str(small_run / "artifacts" / "models")]
    )


def test_the_terminal_shows_because_as_a_column_and_in_json(small_run, rec):
    result = run(small_run, "--user", "3", "--n", "4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(index for index, line in enumerate(lines) if line.lstrip().startswith("rank"))
    assert lines[header].rstrip().endswith("because you liked")
    want = rec.recommend(3, n=4)
    for line, because in zip(lines[header + 1 : header + 5], want["because"]):
        assert line.rstrip().endswith("; ".join(movie["title"] for movie in because))  # short titles: not cut
    out = json.loads(run(small_run, "--user", "3", "--n", "4", "--json").stdout)
    ((_, rows),) = out["recommendations"].items()
    assert [row["because"] for row in rows] == list(want["because"])
    reference = run(small_run, "--user", "3", "--n", "4", "--mode", "reference")
    assert reference.exit_code == 0 and "because" not in reference.output
