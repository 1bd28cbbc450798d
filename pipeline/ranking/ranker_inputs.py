"""The ranker's input rows, built from compact candidate lists by one function, `list_inputs`.

Per candidate row:


  the 14 fields          codes shifted by one: 0 is the unknown user / zip / demographic of a new person
  history                the user's latest liked movies (a VarLenSparseFeat sharing movie_id's embedding,
                         mean-pooled; 0 pads), never a movie of the row's own list
  retrieval_rank         the candidate's rank in the list, bucketed (config.RANK_EDGES)
  retrieval_score        its EASE score from the user's liked movies, z-scored within the list, so that
                         lists from retrieval models fitted on less data (training) and on all of it
                         (serving) are comparable
  disliked_score         the same EASE model's score from the movies the user rated but did not like
                         (z-scored likewise; 0 for a new person, who names liked movies only)
  rated_score            the score of the EASE model fitted on every rating (which movies are watched
                         together) from every movie the user rated (z-scored likewise)
  The last two are what retrieval, which reads liked movies only, cannot see.
  recent_score           the liked model's score from the latest cfg.recent_liked liked movies (when set)
  als_score, als_rated_score
                         ALS's liked model's score from the liked movies and its every-rating model's from every
                         rated movie (cfg.als_scores): a second retrieval model's view of EASE's candidates

Training (pipeline.training.ranker) and scoring (pipeline.ranking.scorers) both call `list_inputs`, so the
rows a ranker learns from and the rows it is asked about are built the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.config import TrainConfig
from pipeline.ranking import architecture
from pipeline.ranking.candidates import CandidateLists


def rank_buckets(k: int) -> np.ndarray:
    """The retrieval_rank code of ranks 1..k (config.RANK_EDGES)."""
    return np.searchsorted(np.asarray(config.RANK_EDGES), np.arange(1, k + 1), side="right").astype(np.int64)


def standardized(scores: np.ndarray) -> np.ndarray:
    """Scores z-scored within each list (row)."""
    spread = scores.std(axis=1, keepdims=True)
    return ((scores - scores.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)).astype(np.float32)


def bucketed(z: np.ndarray) -> np.ndarray:
    """z-scores as bucket codes (config.SCORE_BUCKETS): half a standard deviation per bucket."""
    middle = config.SCORE_BUCKETS // 2
    return np.clip(np.floor(2 * z) + middle, 0, config.SCORE_BUCKETS - 1).astype(np.int64)


def list_scores(lists: CandidateLists, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The retrieval scores of every candidate that cfg's ranker reads (architecture.score_fields), z-scored within
    its list: (L, K) each."""
    scores = {
        "retrieval_score": lists.scores,
        "disliked_score": lists.disliked,
        "rated_score": lists.rated,
        "recent_score": lists.recent,
        "als_score": lists.als_scores,
        "als_rated_score": lists.als_rated,
    }
    out = {}
    for name in architecture.score_fields(cfg):
        if scores[name] is None:
            raise ValueError(f"these candidate lists carry no {name}: their retrieval model has no ALS beside it")
        out[name] = standardized(scores[name])
    return out


def movie_table(catalogue: pd.DataFrame) -> np.ndarray:
    """(n_movies, 6): the movie fields of config.MOVIE_FIELDS by movie code, shifted by one."""
    ordered = catalogue.sort_values("movie_id")
    return ordered[list(config.MOVIE_FIELDS)].to_numpy(np.int64) + 1


def list_inputs(lists: CandidateLists, movies: np.ndarray, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The ranker's input dict for every candidate row of `lists` (L × K rows, list by list)."""
    n_lists, k = lists.movies.shape
    inputs = {field: np.repeat(lists.profile[:, i], k) for i, field in enumerate(config.USER_FIELDS)}
    inputs |= {field: np.repeat(lists.context[:, i], k) for i, field in enumerate(config.CONTEXT_FIELDS)}
    flat = lists.movies.ravel()
    inputs |= {field: movies[flat, i] for i, field in enumerate(config.MOVIE_FIELDS)}
    # Named as the architecture reads it (pipeline.ranking.architecture.history_inputs).
    inputs |= {
        name: np.repeat(values, k, axis=0) for name, values in architecture.history_inputs(lists.history, cfg).items()
    }
    inputs["retrieval_rank"] = np.tile(rank_buckets(k), n_lists)
    for name, z in list_scores(lists, cfg).items():
        inputs[name] = z.reshape(-1, 1)
        if cfg.score_buckets:
            inputs[f"{name}_bucket"] = bucketed(z).ravel()
    return inputs
