"""The ranking stage of the default recommender: DeepCTR AutoInt ordering the retrieval stage's candidates.

For each user the retrieval stage (EASE over the user's whole liked history) proposes the K movies they
are most likely to like; the ranker orders those K using what retrieval cannot see: who the user is,
when they rate, the movie's fields, and (through the history field and the retrieval signal) what they
liked. Its inputs per candidate row:

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

Training asks exactly what serving asks, without leakage: the training rows are cut into per-user folds;
for fold f, a retrieval model fitted on the *other* folds proposes each user's K candidates, and the
user's liked movies of fold f label them. A training row's retrieval signal therefore comes from a
model that never saw that row, and its movie is never in its list's history (it is not an input row).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from pipeline import architecture, config, history, quiet_imports, retrieval
from pipeline.config import TrainConfig
from pipeline.preprocess import Processed, split_temporal
from pipeline.scoring import latest_context


@dataclass(frozen=True)
class CandidateLists:
    """L candidate lists of K movies each, with everything the ranker reads about their user.

    owner     (L,) the user code of each list (-1 for a new person)
    profile   (L, 5) user fields in config.USER_FIELDS order, codes shifted by one (0 = unknown)
    context   (L, 3) rating-time fields in config.CONTEXT_FIELDS order, codes shifted by one
    history   (L, H) latest liked movies, oldest first, codes shifted by one (0 = padding)
    movies    (L, K) candidate movie codes (not shifted), retrieval order
    scores    (L, K) their retrieval scores (raw EASE, from the liked movies)
    disliked  (L, K) their EASE scores from the user's rated-but-not-liked movies
    rated_from_liked, rated_from_disliked
              (L, K) the every-rating model's scores from the liked and from the other rated movies
              (kept apart so that a list can be made to look like a new person's, who names liked ones)
    recent    (L, K) the liked model's scores from the latest cfg.recent_liked liked movies, or None
    labels    (L, K) 1.0 where the candidate is a liked movie of the held-out fold (training only)
    """

    owner: np.ndarray
    profile: np.ndarray
    context: np.ndarray
    history: np.ndarray
    movies: np.ndarray
    scores: np.ndarray
    disliked: np.ndarray
    rated_from_liked: np.ndarray
    rated_from_disliked: np.ndarray
    recent: np.ndarray | None = None
    labels: np.ndarray | None = None

    @property
    def rated(self) -> np.ndarray:
        """The every-rating model's scores from every movie the user rated."""
        return self.rated_from_liked + self.rated_from_disliked

    def __len__(self) -> int:
        return len(self.owner)

    def take(self, rows) -> CandidateLists:
        return CandidateLists(
            **{
                field.name: None if getattr(self, field.name) is None else getattr(self, field.name)[rows]
                for field in dataclasses.fields(self)
            }
        )

    @staticmethod
    def concat(parts: list[CandidateLists]) -> CandidateLists:
        return CandidateLists(
            **{
                field.name: None
                if getattr(parts[0], field.name) is None
                else np.concatenate([getattr(part, field.name) for part in parts])
                for field in dataclasses.fields(CandidateLists)
            }
        )


# --- Building lists --------------------------------------------------------------------------------


def user_lists(
    fitted: retrieval.Retrieval,
    inputs: pd.DataFrame,
    users: pd.DataFrame,
    cfg: TrainConfig,
    labels_from: pd.DataFrame | None = None,
) -> CandidateLists:
    """One list per user with input rows: the top cfg.candidates movies of `fitted` that the user has no
    row of in `inputs`, with the user's fields, latest context and liked history from `inputs`.

    users        the user table (codes, one row per code 0..n_users-1)
    labels_from  rows whose liked movies label the candidates (a held-out fold), or None
    """
    n_users, n_movies = len(users), fitted.n_movies
    owners = np.flatnonzero(np.bincount(inputs["user_id"], minlength=n_users) > 0)
    liked = retrieval.liked_matrix(inputs, n_users, n_movies)[owners]
    seen = retrieval.interaction_matrix(inputs, n_users, n_movies)[owners]
    movies, scores = fitted.top_k(liked, seen, cfg.candidates)
    disliked = retrieval.interaction_matrix(inputs[inputs["label"] == 0], n_users, n_movies)[owners]

    def at_candidates(all_scores):
        return np.take_along_axis(all_scores, movies, axis=1)

    labels = None
    if labels_from is not None:
        positives = labels_from[labels_from["label"] == 1]
        keys = positives["user_id"].to_numpy(np.int64) * n_movies + positives["movie_id"].to_numpy()
        labels = np.isin(owners[:, None] * n_movies + movies, keys).astype(np.float32)
    profile = users.set_index("user_id").loc[owners, list(config.USER_FIELDS[1:])].to_numpy()
    return CandidateLists(
        owner=owners,
        profile=np.column_stack([owners, profile]).astype(np.int64) + 1,
        context=latest_context(inputs).loc[owners].to_numpy(np.int64) + 1,
        history=history.user_histories(inputs, n_users, cfg.history)[owners],
        movies=movies,
        scores=scores,
        disliked=at_candidates(fitted.scores(disliked)),
        rated_from_liked=at_candidates(fitted.rated_scores(liked)),
        rated_from_disliked=at_candidates(fitted.rated_scores(disliked)),
        recent=recent_scores(fitted, history.user_histories(inputs, n_users, cfg.recent_liked)[owners], movies),
        labels=labels,
    )


def person_lists(
    fitted: retrieval.Retrieval,
    liked_movies: list[np.ndarray],
    profiles: np.ndarray,
    contexts: np.ndarray,
    cfg: TrainConfig,
) -> CandidateLists:
    """Lists for people known only by the movies they like (codes, oldest first) and whatever of their
    profile they gave (shifted codes, 0 = unknown); their liked movies are the only ones excluded."""
    n_movies = fitted.n_movies
    rows = np.repeat(np.arange(len(liked_movies)), [len(movies) for movies in liked_movies])
    columns = np.concatenate(liked_movies) if liked_movies else np.zeros(0, np.int64)
    liked = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, columns)), shape=(len(liked_movies), n_movies))
    liked.data[:] = 1.0
    movies, scores = fitted.top_k(liked, liked, cfg.candidates)
    rated = np.take_along_axis(fitted.rated_scores(liked), movies, axis=1)
    return CandidateLists(
        owner=np.full(len(liked_movies), -1),
        profile=np.asarray(profiles, np.int64),
        context=np.asarray(contexts, np.int64),
        history=latest_of(liked_movies, cfg.history),
        movies=movies,
        scores=scores,
        disliked=np.zeros_like(scores),
        rated_from_liked=rated,
        rated_from_disliked=np.zeros_like(scores),
        recent=recent_scores(fitted, latest_of(liked_movies, cfg.recent_liked), movies),
    )


def latest_of(liked_movies: list[np.ndarray], length: int) -> np.ndarray:
    """(people, length): each person's last `length` movie codes (oldest first, right-aligned), shifted by
    one, 0 pads: the history field's layout (history.user_histories) for a list given in order."""
    out = np.zeros((len(liked_movies), length), dtype=np.int32)
    for row, mine in enumerate(liked_movies):
        latest = np.asarray(mine, dtype=np.int32)[len(mine) - min(length, len(mine)) :] + 1
        out[row, length - len(latest) :] = latest
    return out


def recent_scores(fitted: retrieval.Retrieval, latest: np.ndarray, movies: np.ndarray) -> np.ndarray | None:
    """The liked model's scores of `movies` from each list's latest liked movies (shifted codes, 0 pads), or
    None when there are none to read (recent_liked = 0)."""
    if latest.shape[1] == 0:
        return None
    rows, columns = np.nonzero(latest)
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, latest[rows, columns] - 1)), shape=(len(latest), fitted.n_movies)
    )
    return np.take_along_axis(fitted.scores(matrix), movies, axis=1)


def with_context(lists: CandidateLists, codes) -> CandidateLists:
    """The same lists scored in another rating-time context (codes of config.CONTEXT_FIELDS, not shifted)."""
    context = np.tile(np.asarray(codes, dtype=np.int64) + 1, (len(lists), 1))
    return dataclasses.replace(lists, context=context)


def folds_of(rows: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """A fold 0..folds-1 for every row, dealt round-robin over each user's rows in random order, so every
    user's rows spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(rows)), rows["user_id"].to_numpy()))
    position = np.empty(len(rows), dtype=np.int64)
    position[order] = np.arange(len(rows))
    first = np.searchsorted(rows["user_id"].to_numpy()[order], rows["user_id"].to_numpy())
    return (position - first) % folds


def fold_pairs(train: pd.DataFrame, cfg: TrainConfig):
    """(inputs, labels) row pairs of cfg.fold_scheme (see TrainConfig.folds), one per fold, lazily."""
    if cfg.fold_scheme == "random":
        fold = folds_of(train, cfg.folds, cfg.seed)
        for held_out in range(cfg.folds):
            yield train[fold != held_out], train[fold == held_out]
    elif cfg.fold_scheme == "time":
        rest = train
        for _ in range(cfg.folds):
            rest, latest = split_temporal(rest)
            yield rest, latest
    else:
        raise ValueError(f"unknown fold scheme {cfg.fold_scheme!r}; expected random or time")


def training_lists(
    train: pd.DataFrame, users: pd.DataFrame, n_movies: int, cfg: TrainConfig, progress=lambda message: None
) -> CandidateLists:
    """Out-of-fold candidate lists: for each fold, retrieval fitted without it proposes, the fold labels.
    Lists without a single liked candidate teach a listwise loss nothing and are dropped."""
    parts = []
    for held_out, (inputs, labels) in enumerate(fold_pairs(train, cfg)):
        started = time.perf_counter()
        fitted = retrieval.fit(inputs, len(users), n_movies)
        lists = user_lists(fitted, inputs, users, cfg, labels_from=labels)
        parts.append(lists.take(lists.labels.sum(axis=1) > 0) if cfg.loss == "listwise" else lists)
        progress(
            f"fold {held_out + 1}/{cfg.folds}: {len(parts[-1]):,} lists, "
            f"{parts[-1].labels.mean():.1%} liked candidates ({time.perf_counter() - started:.0f} s)"
        )
    return CandidateLists.concat(parts)


def anonymized(lists: CandidateLists, cfg: TrainConfig, rng: np.random.Generator) -> CandidateLists:
    """cfg.anonymous_share of the lists with user_id and zip unknown (0); of those, cfg.newcomer_share made
    to look like a new person's: only liked movies known (no disliked ones), and for half of them gender,
    age and occupation unknown too."""
    if not cfg.anonymous_share:
        return lists
    profile, disliked, rated_from_disliked = (
        lists.profile.copy(),
        lists.disliked.copy(),
        lists.rated_from_disliked.copy(),
    )
    anonymous = rng.random(len(lists)) < cfg.anonymous_share
    profile[anonymous, 0] = 0
    profile[anonymous, config.USER_FIELDS.index("zip")] = 0
    newcomer = anonymous & (rng.random(len(lists)) < cfg.newcomer_share)
    disliked[newcomer] = 0.0
    rated_from_disliked[newcomer] = 0.0
    silent = newcomer & (rng.random(len(lists)) < 0.5)
    for field in ("gender", "age", "occupation"):
        profile[silent, config.USER_FIELDS.index(field)] = 0
    return dataclasses.replace(lists, profile=profile, disliked=disliked, rated_from_disliked=rated_from_disliked)


# --- Model inputs ----------------------------------------------------------------------------------


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


def list_scores(lists: CandidateLists) -> dict[str, np.ndarray]:
    """The ranker's retrieval scores of every candidate, z-scored within its list: (L, K) each."""
    scores = {"retrieval_score": lists.scores, "disliked_score": lists.disliked, "rated_score": lists.rated}
    if lists.recent is not None:
        scores["recent_score"] = lists.recent
    return {name: standardized(values) for name, values in scores.items()}


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
    inputs["history"] = np.repeat(lists.history, k, axis=0)
    inputs["retrieval_rank"] = np.tile(rank_buckets(k), n_lists)
    for name, z in list_scores(lists).items():
        inputs[name] = z.reshape(-1, 1)
        if cfg.score_buckets:
            inputs[f"{name}_bucket"] = bucketed(z).ravel()
    return inputs


def list_dataset(lists: CandidateLists, movies: np.ndarray, cfg: TrainConfig, seed: int):
    """A tf.data pipeline of batches of whole lists (cfg.batch_size // cfg.candidates each), shuffled,
    expanded to candidate rows inside the graph (a list's user fields and history are stored once, not K
    times)."""
    tf = quiet_imports.tensorflow()
    n_lists, k = lists.movies.shape
    scores = list_scores(lists)
    constant = {
        "profile": lists.profile,
        "context": lists.context,
        "history": lists.history,
        "movies": lists.movies,
        "labels": lists.labels,
        **scores,
    }
    if cfg.score_buckets:
        constant |= {f"{name}_bucket": bucketed(z) for name, z in scores.items()}
    tensors = {key: tf.constant(value) for key, value in constant.items()}
    movie_fields, ranks = tf.constant(movies), tf.constant(rank_buckets(k))

    def expand(index):
        take = {key: tf.gather(value, index) for key, value in tensors.items()}
        rows = tf.shape(index)[0] * k
        flat_movies = tf.reshape(take["movies"], [-1])
        x = {field: tf.repeat(take["profile"][:, i], k) for i, field in enumerate(config.USER_FIELDS)}
        x |= {field: tf.repeat(take["context"][:, i], k) for i, field in enumerate(config.CONTEXT_FIELDS)}
        x |= {field: tf.gather(movie_fields[:, i], flat_movies) for i, field in enumerate(config.MOVIE_FIELDS)}
        x["history"] = tf.repeat(take["history"], k, axis=0)
        x["retrieval_rank"] = tf.tile(ranks, [tf.shape(index)[0]])
        for name in scores:
            x[name] = tf.reshape(take[name], [rows, 1])
            if cfg.score_buckets:
                x[f"{name}_bucket"] = tf.reshape(take[f"{name}_bucket"], [rows])
        return x, tf.reshape(take["labels"], [rows, 1])

    lists_per_batch = max(1, cfg.batch_size // k)
    return (
        tf.data.Dataset.range(n_lists)
        .shuffle(n_lists, seed=seed)
        .batch(lists_per_batch)
        .map(expand, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )


# --- Training --------------------------------------------------------------------------------------


def listwise_loss(k: int):
    """Softmax cross-entropy over each list of k candidate logits against its liked candidates (each
    liked one weighs 1/#liked), averaged over the lists with at least one liked candidate."""
    tf = quiet_imports.tensorflow()

    def loss(labels, logits):
        labels, logits = tf.reshape(labels, [-1, k]), tf.reshape(logits, [-1, k])
        liked = tf.reduce_sum(labels, axis=1)
        per_list = -tf.reduce_sum(labels * tf.nn.log_softmax(logits, axis=1), axis=1) / tf.maximum(liked, 1.0)
        return tf.reduce_sum(per_list) / tf.maximum(tf.reduce_sum(tf.cast(liked > 0, tf.float32)), 1.0)

    return loss


def trainable(model, cfg: TrainConfig):
    """What is fitted: with the listwise loss, the same weights as `model` but ending at the logit (the
    sigmoid of DeepCTR's PredictionLayer does not change an order); otherwise `model` itself."""
    tf = quiet_imports.tensorflow()
    if cfg.loss != "listwise":
        return model
    logits = tf.keras.Model(model.inputs, model.layers[-1].input)
    logits.compile(tf.keras.optimizers.Adam(cfg.learning_rate), listwise_loss(cfg.candidates))
    return logits


def train_ranker(data: Processed, cfg: TrainConfig, progress: bool = False, log=print, on_epoch=None):
    """Fit the ranker on out-of-fold candidate lists of data.train. Returns the model and its history.
    on_epoch(epoch, model, train_seconds), if given, is called after every epoch (make tune scores there)."""
    from pipeline.train import epoch_progress, training_history

    tf = quiet_imports.tensorflow()
    started = time.perf_counter()
    lists = training_lists(data.train, data.users, len(data.movies), cfg, progress=log)
    rng = np.random.default_rng(cfg.seed)
    validation = np.isin(
        lists.owner, rng.choice(len(data.users), int(cfg.validation_split * len(data.users)), replace=False)
    )
    fit_lists, val_lists = lists.take(~validation), lists.take(validation)
    movies = movie_table(data.movies)
    tf.keras.utils.set_random_seed(cfg.seed)
    model = architecture.build_model(data.encoders.dims(), cfg)
    fitted = trainable(model, cfg)
    bar = epoch_progress(cfg.model, progress)
    losses = {"loss": [], "val_loss": []}
    for epoch in range(cfg.epochs):
        fitted.optimizer.learning_rate.assign(cfg.learning_rate * cfg.lr_decay**epoch)
        epoch_lists = anonymized(fit_lists, cfg, rng)
        validation_data = list_dataset(val_lists, movies, cfg, cfg.seed) if len(val_lists) else None
        result = fitted.fit(
            list_dataset(epoch_lists, movies, cfg, cfg.seed + epoch),
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=validation_data,
            callbacks=[bar],
            verbose=0,
        )
        for key in losses:
            losses[key] += result.history.get(key, [float("nan")])
        if on_epoch is not None:
            on_epoch(epoch, model, time.perf_counter() - started)
    rows = len(fit_lists) * cfg.candidates
    return model, training_history(cfg, losses, time.perf_counter() - started, rows)


# --- Scoring ---------------------------------------------------------------------------------------


class ListScorer:
    """A trained ranker as a function CandidateLists → (L, K) scores, through one traced tf.function
    (Model.predict pays tens of milliseconds of set-up per call; a direct call of the graph does not)."""

    def __init__(self, model, cfg: TrainConfig, batch_rows: int = config.SCORING_BATCH_ROWS):
        tf = quiet_imports.tensorflow()
        self.cfg = cfg
        self.batch_rows = batch_rows
        signature = {
            tensor.name.split(":")[0]: tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name.split(":")[0])
            for tensor in model.inputs
        }

        @tf.function(input_signature=[signature])
        def forward(inputs):
            return model(inputs, training=False)[:, 0]

        self._forward = forward
        self._dtypes = {name: spec.dtype.as_numpy_dtype for name, spec in signature.items()}

    def __call__(self, lists: CandidateLists, movies: np.ndarray) -> np.ndarray:
        n_lists, k = lists.movies.shape
        out = np.empty(n_lists * k, dtype=np.float32)
        per_call = max(1, self.batch_rows // max(k, 1))
        for start in range(0, n_lists, per_call):
            inputs = list_inputs(lists.take(slice(start, start + per_call)), movies, self.cfg)
            batch = {
                name: np.asarray(values, dtype=self._dtypes[name]).reshape(len(values), -1)
                for name, values in inputs.items()
            }
            out[start * k : (start + per_call) * k] = self._forward(batch).numpy()
        return out.reshape(n_lists, k)


def ranked(lists: CandidateLists, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each list's n best candidates by ranker score (ties keep retrieval order): (movies, scores)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(lists.movies, order, axis=1), np.take_along_axis(scores, order, axis=1)


@dataclass(frozen=True)
class TwoStage:
    """The default recommender: retrieval proposes cfg.candidates movies per list, the ranker orders them."""

    retrieval: retrieval.Retrieval
    scorer: ListScorer
    movies: np.ndarray  # movie_table(catalogue)

    @property
    def cfg(self) -> TrainConfig:
        return self.scorer.cfg

    def top_n(self, lists: CandidateLists, n: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Each list's n best candidates and their ranker scores (lists of many users go in chunks)."""
        from tqdm import tqdm

        chunk = max(1, config.SCORING_BATCH_ROWS // max(self.cfg.candidates, 1))
        movies, scores = [], []
        for start in tqdm(range(0, len(lists), chunk), desc="ranking", unit="chunk", disable=not progress):
            part = lists.take(slice(start, start + chunk))
            best = ranked(part, self.scorer(part, self.movies), n)
            movies.append(best[0])
            scores.append(best[1])
        if not movies:
            return np.zeros((0, n), np.int64), np.zeros((0, n), np.float32)
        return np.concatenate(movies), np.concatenate(scores)
