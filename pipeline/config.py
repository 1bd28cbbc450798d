"""Every setting of the pipeline: paths, the feature schema, hyper-parameters, published numbers.

Stages and tests import from here; nothing else defines a path, a field list or a default. The settings of
serving and its benchmarks are in config_serving.py, those of streaming, workers and synthetic data in
config_scale.py, those of measuring (the reference's published table, tuning's validation carves, the newcomer
curve, the issues' targets) in config_evaluation.py: the same one place, cut in four by job.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

# DeepCTR runs on tf-keras (see README); this must be set before TensorFlow is first imported,
# and every stage imports config first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Quiets TensorFlow's C++ logging once it runs; the lines it prints while being imported are
# silenced by train.quiet_model_imports. Python errors still raise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# REPO_DIR holds the code; ROOT holds data/ and artifacts/ (the same folder unless ML_PIPELINE_ROOT says otherwise).
REPO_DIR = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("ML_PIPELINE_ROOT", REPO_DIR))
DATA_DIR = ROOT / "data"
RAW_DIR = DATA_DIR / "ml-1m"
PROCESSED_DIR = DATA_DIR / "processed"
ARTIFACTS_DIR = ROOT / "artifacts"
MODELS_DIR = ARTIFACTS_DIR / "models"
STUDY_DIR = ARTIFACTS_DIR / "study"  # make study's evaluation
REPRO_DIR = ARTIFACTS_DIR / "repro"  # make repro's evaluation (what CI checks)

# --- Obtaining MovieLens 1M (the dataset's own facts are in pipeline/data/movielens.py) ---
DOWNLOAD_TIMEOUT_S = 20

# --- Feature schema -------------------------------------------------------------------------------
# The seed's 14 categorical fields, in the reference's order; each becomes one DeepCTR SparseFeat.
FIELDS = (
    "user_id",
    "movie_id",
    "movie_decade",
    "movie_year",
    "rating_year",
    "rating_month",
    "rating_decade",
    "genre1",
    "genre2",
    "genre3",
    "gender",
    "age",
    "occupation",
    "zip",
)
USER_FIELDS = ("user_id", "gender", "age", "occupation", "zip")
MOVIE_FIELDS = ("movie_id", "movie_decade", "movie_year", "genre1", "genre2", "genre3")
CONTEXT_FIELDS = ("rating_year", "rating_month", "rating_decade")
GENRE_PLACEHOLDER = "(none)"
LIKE_THRESHOLD = 4  # rating >= 4 is a positive; 3 is a negative, as in the reference
MAX_RATING = 5
TARGETS = ("liked", "rated", "graded")
NEGATIVE_SAMPLERS = ("uniform", "popularity")  # TrainConfig.negative_sampler
NEGATIVES_PER = ("rating", "user")  # TrainConfig.negatives_per
EMBEDDING_DIM = 16

TEST_SIZE = 0.2
SPLIT_SEED = 42
SPLITS = ("random", "temporal")  # the reference's random 80/20 split; a per-user latest-20 % holdout
# Preprocessing reads ratings.dat `chunk_rows` rows at a time and writes each split table in row groups of
# `row_group_rows`: pyarrow's default, so the files are the ones pandas wrote whole (and the streamed trainer
# decodes one such group at a time).
PREPROCESS = {"chunk_rows": 2_000_000, "row_group_rows": 1_048_576}

# --- Models ----------------------------------------------------------------------------------------


def option(default, help: str, flag: str = "", make: str = "", min=None, max=None, choices=None):
    """A TrainConfig field that is a training option: `python -m pipeline train --<field-name>` (or `flag`) and
    `make train <FIELD_NAME>=` (or `make`) set it; pipeline.settings_files reads both front ends from here."""
    limits = {"min": min, "max": max, "choices": choices}
    return field(default=default, metadata={"help": help, "option": flag, "make": make, **limits})


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one model; the defaults are the reference project's AutoInt."""

    model: str = "autoint"
    # What DeepCTR builds (a key of pipeline.ranking.architecture.BUILDERS): ARCHITECTURES, or for a two-stage
    # ranker of make study STUDY_ARCHITECTURES. Not a training option: a model file's name says its architecture.
    architecture: str = "autoint"
    epochs: int = option(5, "Passes over the training rows.", min=1)
    batch_size: int = option(2048, "Rows per batch (a two-stage ranker's: batch_size // candidates lists).", min=1)
    learning_rate: float = option(1e-4, "Adam learning rate.", flag="--lr", make="LR", min=0.0)
    # Epoch e (from 0) trains at learning_rate * lr_decay ** e; 1.0 keeps it constant, as the reference did.
    lr_decay: float = 1.0
    # > 0: Adam keeps an exponential moving average of the weights with this momentum, and the model
    # takes the averaged weights at the end of every epoch (smooths the epoch-to-epoch wobble). 0: off.
    ema_momentum: float = 0.0
    # > 0: a user's ratings weigh more the later they were made, from 1 (their first) to 1 + recency_weight
    # (their latest); a sampled negative weighs as the rating it was drawn for. 0: every row weighs 1.
    recency_weight: float = 0.0
    validation_split: float = option(0.1, "Share of the rows held out for val_loss (the last).", min=0.0, max=0.9)
    embedding_dim: int = option(EMBEDDING_DIM, "Embedding size of every field.", min=1)
    att_layer_num: int = option(3, "Self-attention (interacting) layers.", min=0)
    att_head_num: int = option(2, "Attention heads per layer.", min=1)
    att_res: bool = True
    dnn_hidden_units: tuple[int, ...] = option((), 'DNN layer sizes, a comma list, e.g. "32,32"; "" for none.')
    dnn_activation: str = "relu"
    dnn_dropout: float = option(0.0, "Dropout rate of the DNN branch.", min=0.0, max=1.0)
    l2_reg_embedding: float = 1e-5
    l2_reg_dnn: float = 0.0
    seed: int = option(1024, "Random seed of the weights and of the sampled negatives.")
    negatives: int = option(0, "Sampled unrated movies per rating, as label-0 rows (0: rated rows only).", min=0)
    negative_sampler: str = option("uniform", "How the unrated movies are drawn.", choices=NEGATIVE_SAMPLERS)
    negatives_per: str = option(
        "rating", '"rating": `negatives` per rating; "user": the same total for every user.', choices=NEGATIVES_PER
    )
    fresh_negatives: bool = option(
        False, "Draw new negatives every epoch, or once for all.", flag="--fresh-negatives/--fixed-negatives"
    )
    # The label of a rated row: "liked" (1 if rating >= 4, else 0: the reference's label), "rated" (1 for any
    # rating: the model then learns P(rated)) or "graded" (rating / 5, a soft label in 0.2..1 that keeps
    # the difference between a 1 and a 3, and in ranking mode also ranks any rated movie above an unrated
    # one). Sampled unrated rows are 0 in every case.
    target: str = "liked"
    # > 0: a 15th field, the user's latest `history` liked training movies (never the row's own movie),
    # mean-pooled by a DeepCTR VarLenSparseFeat that shares movie_id's embedding. Models with it (or with
    # candidates) code every field from 1, keeping 0 for padding and for an unknown user.
    history: int = option(0, "Liked training movies in the history field (0: no such field).", min=0)
    # > 0: a 16th field for the 14-field models, the user's latest `disliked_history` rated-but-not-liked
    # training movies (never the row's own), pooled the same way and sharing the same embedding.
    disliked_history: int = 0
    # > 0: a two-stage ranker (pipeline.training.ranker) that orders the retrieval stage's top `candidates` unseen
    # movies per user, trained on candidate lists of retrieval models fitted out of fold.
    candidates: int = option(0, "Retrieval candidates a two-stage ranker orders (0: a 14-field model).", min=0)
    # The ranker's training lists: each user's training rows are cut into `folds` parts; each part's liked
    # movies label the candidates of a retrieval model fitted without it. fold_scheme "random": the parts
    # are random, the model is fitted on the other parts; "time": the part is the user's latest fifth of
    # the rows not yet held out, the model is fitted on the rows before it (what a temporal split asks).
    folds: int = 5
    fold_scheme: str = "random"
    # "binary": cross-entropy per row; "listwise": softmax cross-entropy over each user's candidate list.
    loss: str = "binary"
    # > 0: the ranker also reads the liked model's score from only the user's latest `recent_liked` liked
    # movies (z-scored within the list): their current taste, which the whole history blurs.
    recent_liked: int = 0
    # The ranker also reads its retrieval scores bucketed (SparseFeats, config.SCORE_BUCKETS), so
    # that they join the attention: without a DNN branch DeepCTR's AutoInt reads dense fields only in
    # its linear term.
    score_buckets: bool = False
    # The ranker also reads ALS's scores of each candidate as two more fields (z-scored within the list): its liked
    # model's from the liked movies and its every-rating model's from every rated movie. A second retrieval model's
    # view of EASE's candidates (config.RETRIEVAL["als_beside_ease"]); with an ALS retrieval, its own scores again.
    als_scores: bool = False
    # Share of training lists whose user_id and zip are replaced by the unknown code, so that a new person
    # has a representation the ranker learnt; of those, `newcomer_share` also lose every movie they rated
    # but did not like (a newcomer names liked movies only), and half of these their gender, age and
    # occupation too.
    anonymous_share: float = 0.0
    newcomer_share: float = 0.0
    # Streamed two-stage training at scale: each epoch stops after this many lists (0: every list), so that
    # a bench or a 2-core run of 25 M ratings can time an epoch's start without running all of it.
    epoch_lists: int = option(0, "Cut each streamed epoch of a two-stage ranker to this many lists (0: all).", min=0)

    @property
    def coded_from_one(self) -> bool:
        """Field codes shifted by one (0 = padding / unknown), as DeepCTR's VarLenSparseFeat masking needs."""
        return bool(self.history or self.disliked_history or self.candidates)

    @property
    def history_fields(self) -> dict[str, tuple[int, int]]:
        """The history fields a 14-field model reads: {name: (length, label of the movies it holds)}."""
        fields = {"history": (self.history, 1), "disliked_history": (self.disliked_history, 0)}
        return {} if self.candidates else {name: spec for name, spec in fields.items() if spec[0]}


def with_defaults(stored: dict) -> dict:
    """A TrainConfig stored as a dict (tuning.json), with settings added since it was written at their defaults."""
    return {**asdict(TrainConfig()), **stored}


def train_config(stored: dict) -> TrainConfig:
    """A TrainConfig from its dict form (JSON turns tuples into lists)."""
    values = with_defaults(stored)
    values["dnn_hidden_units"] = tuple(values["dnn_hidden_units"])
    return TrainConfig(**values)


_REFERENCE_AUTOINT = TrainConfig(model="autoint")
_REFERENCE_AUTOINT_MLP = TrainConfig(
    model="autoint_mlp", architecture="autoint_mlp", dnn_hidden_units=(32, 32), dnn_dropout=0.4
)

# One DeepCTR AutoInt architecture (ARCHITECTURES) trained one way is a model, saved as one file named
# <architecture><mode suffix>. The modes:
#   two_stage   the default recommender: orders the retrieval stage's candidates for a user, with the
#               user's liked history and the retrieval signal as extra fields (pipeline.training.ranker);
#   reference   the reference project's settings, checked against its published table (make repro);
#   tuned       the reference task (will a user like a movie they rated?) with the liked-history field
#               and settings tuned on validation (make tune);
#   sampled     learns which *unrated* movies a user will like from sampled unrated movies as extra
#               label-0 rows, scored over the whole catalogue (the previous default; study only).
ARCHITECTURES = ("autoint", "autoint_mlp")
# The other DeepCTR 0.9.4 models that take the two-stage ranker's inputs, each trained as a two-stage ranker only,
# in make study only, and not served (docs/recommender.md, "Other DeepCTR rankers", says which cannot and why).
STUDY_ARCHITECTURES = (
    "deepfm",
    "xdeepfm",
    "dcn",
    "dcnmix",
    "fibinet",
    "nfm",
    "wdl",
    "din",
    "bst",
    "fwfm",
    "pnn",
)
MODES = {"two_stage": "_two_stage", "reference": "", "tuned": "_tuned", "sampled": "_sampled"}
DEFAULT_MODE = "two_stage"
DEFAULT_ARCHITECTURE = "autoint_mlp"

_TWO_STAGE = dict(
    learning_rate=1e-3,
    # One epoch on the random split: on the random carve a second moved Recall@10 / NDCG@10 by -0.0008 / +0.0005
    # for AutoInt+MLP (make tune, candidate 23) and by +0.0016 / +0.0004 for AutoInt (docs/recommender.md,
    # "Choosing the settings"), within the epoch-to-epoch noise, and each costs 80-90 s of make all.
    epochs=1,
    batch_size=6400,
    history=50,
    candidates=100,
    folds=5,
    loss="listwise",
    validation_split=0.05,
    anonymous_share=0.5,
    newcomer_share=0.4,
    recent_liked=10,
)
MODELS = {
    "autoint": _REFERENCE_AUTOINT,
    "autoint_mlp": _REFERENCE_AUTOINT_MLP,
    "autoint_two_stage": replace(_REFERENCE_AUTOINT, model="autoint_two_stage", score_buckets=True, **_TWO_STAGE),
    "autoint_mlp_two_stage": replace(
        _REFERENCE_AUTOINT,
        model="autoint_mlp_two_stage",
        architecture="autoint_mlp",
        dnn_hidden_units=(64, 32),
        # ALS's scores beside EASE's: +2.7 % / +3.7 % Recall@10 / NDCG@10 on the random carve, +1.7 % / +0.2 % on
        # the temporal one; level for AutoInt, which does without (docs/recommender.md, "ALS's scores beside EASE's").
        als_scores=True,
        **_TWO_STAGE,
    ),
    "autoint_tuned": replace(
        _REFERENCE_AUTOINT,
        model="autoint_tuned",
        learning_rate=1e-3,
        epochs=7,
        l2_reg_embedding=1e-4,
        history=50,
        disliked_history=50,
    ),
    "autoint_mlp_tuned": replace(
        _REFERENCE_AUTOINT_MLP,
        model="autoint_mlp_tuned",
        learning_rate=1e-3,
        epochs=6,
        dnn_hidden_units=(256, 128),
        history=50,
        disliked_history=50,
    ),
    "autoint_sampled": replace(
        _REFERENCE_AUTOINT, model="autoint_sampled", learning_rate=1e-3, epochs=4, negatives=3, fresh_negatives=True
    ),
    "autoint_mlp_sampled": replace(
        _REFERENCE_AUTOINT_MLP,
        model="autoint_mlp_sampled",
        learning_rate=1e-3,
        epochs=4,
        negatives=3,
        fresh_negatives=True,
    ),
}
# The study's other rankers: the AutoInt+MLP ranker's two-stage settings (the same lists, epochs, learning rate and
# batch; not ALS's scores, unmeasured for them), and DeepCTR 0.9.4's defaults for everything their constructors
# own: a 256-128-64 DNN without dropout, and L2 1e-5 on the embeddings (1e-6 in DIN and BST).
MODELS |= {
    architecture + MODES["two_stage"]: replace(
        _REFERENCE_AUTOINT,
        model=architecture + MODES["two_stage"],
        architecture=architecture,
        dnn_hidden_units=(256, 128, 64),
        l2_reg_embedding=1e-6 if architecture in ("din", "bst") else 1e-5,
        **_TWO_STAGE,
    )
    for architecture in STUDY_ARCHITECTURES
}


# What a model changes on the temporal split: there a two-stage ranker learns from each user's latest
# rows (fold_scheme "time"), which is what that split tests, for two epochs (on the temporal carve the second
# epoch added +0.004 / +0.007 Recall@10 / NDCG@10; README, "Choosing the settings").
TEMPORAL_TWO_STAGE = {"fold_scheme": "time", "epochs": 2}


# The settings that decide a two-stage ranker's out-of-fold training lists (pipeline.training.ranker): rankers
# that agree on them train on the same lists, which `make all` builds once for both (`make candidates`).
LIST_SETTINGS = ("candidates", "history", "recent_liked", "folds", "fold_scheme", "seed", "loss")


def model_settings(name: str, split: str = "random") -> TrainConfig:
    """The settings of model `name` when trained on `split`."""
    cfg = MODELS[name]
    return replace(cfg, **TEMPORAL_TWO_STAGE) if split == "temporal" and cfg.candidates else cfg


def model_name(architecture: str, mode: str = DEFAULT_MODE) -> str:
    """The model file name of `architecture` trained in `mode`, e.g. autoint_mlp → autoint_mlp_two_stage."""
    return architecture + MODES[mode]


def models_of(*modes: str) -> tuple[str, ...]:
    return tuple(model_name(architecture, mode) for mode in modes for architecture in ARCHITECTURES)


REFERENCE_MODELS = models_of("reference")
TWO_STAGE_MODELS = models_of("two_stage")
STUDY_RANKERS = tuple(model_name(architecture) for architecture in STUDY_ARCHITECTURES)
# What each Make path trains and evaluates, per split. `make all` is the product: the reference models
# (for the reproduction) and the default recommenders on the random split. `make study` adds the tuned
# and sampled models, the other DeepCTR rankers and the temporal split.
PRODUCT_MODELS = {"random": models_of("reference", "two_stage")}
STUDY_MODELS = {
    "random": models_of("reference", "two_stage", "tuned", "sampled") + STUDY_RANKERS,
    "temporal": models_of("two_stage", "sampled") + STUDY_RANKERS,
}
# The models recommend, bench, the web page and the service can load (all trained by `make all`).
SERVED_MODES = ("two_stage", "reference")

# --- Retrieval (the candidate stage of the two-stage recommender) ----------------------------------------
# L2 weight of EASE's item-item regression, chosen on the two validation carves (never on test rows):
# over 100, 300, 1000 and 3000, and over liked vs all rated training ratings as the user-movie matrix,
# liked with 300 gave the best Recall@10 and NDCG@10 on the random carve and the best NDCG@10 on the
# temporal one.
EASE_L2 = 300.0
# Which retrieval model (pipeline/retrieval/retriever.py) and ALS's settings. kind "ease" or "als"; None picks
# EASE for catalogues of up to ease_max_movies movies and ALS above: EASE's fit peaks at ~39 bytes per catalogue²,
# 6 GiB at ~12,800 movies (docs/scale.md, "Retrieval at scale"); the EASE baseline is left out above it too. ALS's
# settings were chosen on the random carve of ML-1M's training rows (docs/recommender.md, "Retrieval"). ALS's lists
# on ML-1M were tried and not kept (docs/recommender.md, "Which one"): better on the validation carves for
# AutoInt+MLP, level for AutoInt, and on the test rows +1.0 % Recall@10 but -0.7 % NDCG@10 for the default and
# AutoInt's NDCG@10 below EASE's.
RETRIEVAL = {
    "kind": None,
    "ease_max_movies": 12_000,
    "als": {"factors": 128, "regularization": 100.0, "alpha": 10.0, "iterations": 15, "seed": 0},
    # An EASE retrieval stage also fits both ALS models on the same rows, for the rankers that read ALS's scores of
    # EASE's candidates (TrainConfig.als_scores; docs/recommender.md, "ALS's scores beside EASE's").
    "als_beside_ease": True,
    "threads": 2,  # implicit's threads (fit and fold-in); BLAS is held to one thread under them
    # People × movies scores computed at once by top_k and scores_at (64 MB of float32), whatever the users.
    "scoring_cells": 2**24,
}
# A candidate's rank r (1-based) in the retrieval list is given to the ranker as the number of these
# edges that are <= r: ranks 1, 2, 3, 4-5, 6-10, 11-20, 21-50, 51-100, 101-200, 201+.
RANK_EDGES = (2, 3, 4, 6, 11, 21, 51, 101, 201)
# A z-scored retrieval score z is bucketed as clip(floor(2z) + 8, 0, 16): half a standard deviation per
# bucket, everything beyond ±4 in the end buckets.
SCORE_BUCKETS = 17

# --- Scoring ---------------------------------------------------------------------------------------
# Rows per call of a Keras model when scoring. Measured in full evaluate runs on 2 cores: 262,144 rows
# per call ~150k rows/s; 8,192 only ~90k (TensorFlow spreads small calls poorly over both cores).
SCORING_BATCH_ROWS = 262_144
# ...except for the architectures whose intermediate tensors at that size ran out of the machine's 24 GiB in
# `make study`'s evaluate (DIN's attention over 50 history items per row, xDeepFM's CIN, BST's Transformer):
# 16,384 rows a call for them.
SCORING_BATCH_ROWS_OF = {"din": 16_384, "xdeepfm": 16_384, "bst": 16_384}


def scoring_batch_rows(architecture: str) -> int:
    return SCORING_BATCH_ROWS_OF.get(architecture, SCORING_BATCH_ROWS)


# evaluate, precompute and recommend-all go through the users this many at a time: one chunk's candidate
# lists, rated test rows and Top-N, and at most one users × catalogue block of baseline scores, are held at
# once (4,096 × 18,530 movies of the 25 M SYNTHETIC set × 4 bytes = 0.30 GB in float32). Results do not
# depend on it (tests/test_evaluate_chunks.py).
SCORING_CHUNK_USERS = 4096

# --- Lists ---------------------------------------------------------------------------------------------
TOP_N = 10
MAX_LIKED = 500  # the most movies a new person's liked list may name (the CLI, the page, the service)
BECAUSE_N = 3  # liked movies named per recommended movie ("because you liked"), those adding most to its score
# Movies per user in the precomputed tables of the two-stage models (`make precompute`): a default request
# for at most this many is answered from the table.
PRECOMPUTED_N = 100

# A new person's list (pipeline/ranking/newcomer_lists.py), by how many liked movies they named (the entry of the
# largest key at most theirs): `popular` of the movies most liked by their gender and age group join the candidates,
# and the list is ordered by the ranker's score blended with that popularity at `weight` and with retrieval's own
# score at `retrieval`. Chosen on the validation newcomers, the setting furthest above the better baseline in both
# metrics (artifacts/study/newcomers.json, "chosen_on_validation"; docs/recommender.md, "New people").
NEWCOMER_LISTS = {
    1: {"popular": 10, "weight": 8.0, "retrieval": 0.0},
    3: {"popular": 10, "weight": 8.0, "retrieval": 0.0},
    5: {"popular": 80, "weight": 1.0, "retrieval": 0.0},
    10: {"popular": 50, "weight": 0.5, "retrieval": 1.0},
}

# --- Baselines -----------------------------------------------------------------------------------------
# Weight of the global positive rate in the positive-rate baseline, in pseudo-ratings: a movie with 10
# training ratings is pulled halfway to the global rate, one with 200 barely moves. Small enough not to
# flatten popular movies, large enough that a single 5-star rating cannot top the chart.
POSITIVE_RATE_PRIOR = 10.0


def choice(name: str, values) -> type[Enum]:
    """A str Enum of `values` for a typer option, so that `--help` lists them and typer rejects others."""
    return Enum(name, {value: value for value in values}, type=str)


Split = choice("Split", SPLITS)
Model = choice("Model", MODELS)
Architecture = choice("Architecture", (*ARCHITECTURES, "both"))
ServedMode = choice("ServedMode", SERVED_MODES)
# What scores on the serving paths: the models' LiteRT files (no TensorFlow) or their .keras files.
Runtime = choice("Runtime", ("litert", "keras"))
RUNTIME_HELP = "litert: the models' LiteRT files, no TensorFlow (default); keras: their .keras files."


def model_path(name: str, split: str = "random", models_dir: Path = MODELS_DIR) -> Path:
    """Where model `name` trained on `split` is saved: models/<name>.keras or models/temporal/<name>.keras."""
    return (models_dir if split == "random" else models_dir / split) / f"{name}.keras"


def litert_path(name: str, split: str = "random", models_dir: Path = MODELS_DIR, variant: str = "float32") -> Path:
    """Model `name`'s LiteRT file: <name>.tflite (float32) or <name>.<variant>.tflite beside its .keras."""
    keras = model_path(name, split, models_dir)
    return keras.with_name(keras.stem + ("" if variant == "float32" else f".{variant}") + ".tflite")
