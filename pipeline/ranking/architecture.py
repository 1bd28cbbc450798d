"""DeepCTR's models built from the feature schema: AutoInt and AutoInt+MLP, and the study's other rankers.

An architecture is what DeepCTR builds (TrainConfig.architecture, a key of BUILDERS); a model is an architecture
trained one way (config.MODELS). This module only wires the schema to DeepCTR: it declares the feature columns,
calls the constructor, compiles, saves and loads. BUILDERS is the one place that says, per architecture, which
constructor builds it, which column arguments it takes and which TrainConfig settings it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import config, quiet_imports
from pipeline.config import TrainConfig

# DIN and BST read the liked history as a behaviour sequence, found by DeepCTR's naming convention: the
# VarLenSparseFeat of field f in history_feature_list is named "hist_<f>", and BST reads its valid length from the
# input "seq_length" (a name fixed in its source). Every other architecture reads the mean-pooled "history".
SEQUENCE_FIELD = "movie_id"
SEQUENCE_INPUT = "hist_" + SEQUENCE_FIELD
SEQUENCE_LENGTH = "seq_length"


def _linear_and_dnn(columns: list) -> tuple:
    # linear_feature_columns, dnn_feature_columns. AutoInt always adds a linear term, and DeepCTR fails at fit on an
    # empty linear column list, so every column feeds both parts (as DeepCTR's own examples do).
    return columns, columns


def _dnn_only(columns: list) -> tuple:
    return (columns,)


def _behaviour_sequence(columns: list) -> tuple:
    # dnn_feature_columns, history_feature_list: the candidate's movie_id attends over the liked movies.
    return columns, [SEQUENCE_FIELD]


# The TrainConfig settings every DeepCTR deep model takes under the same names.
_DNN = ("dnn_hidden_units", "dnn_activation", "dnn_dropout", "l2_reg_dnn", "l2_reg_embedding")
_AUTOINT = ("att_layer_num", "att_head_num", "att_res", *_DNN)


@dataclass(frozen=True)
class Builder:
    """How DeepCTR builds one architecture: `constructor` (a deepctr.models name) is called with `columns`
    (the feature columns → its leading arguments) and the TrainConfig fields named in `settings`; whatever else the
    constructor takes stays at DeepCTR's default."""

    constructor: str
    columns: Callable[[list], tuple] = _linear_and_dnn
    settings: tuple[str, ...] = _DNN

    @property
    def sequence(self) -> bool:
        """It reads the liked history as a behaviour sequence (SEQUENCE_INPUT and SEQUENCE_LENGTH)."""
        return self.columns is _behaviour_sequence


BUILDERS = {
    "autoint": Builder("AutoInt", settings=_AUTOINT),  # dnn_hidden_units=() there: attention only
    "autoint_mlp": Builder("AutoInt", settings=_AUTOINT),
    "deepfm": Builder("DeepFM"),
    "xdeepfm": Builder("xDeepFM"),
    "dcn": Builder("DCN"),
    "dcnmix": Builder("DCNMix"),
    "fibinet": Builder("FiBiNET"),
    "nfm": Builder("NFM"),
    "wdl": Builder("WDL"),
    "din": Builder("DIN", _behaviour_sequence),
    "bst": Builder("BST", _behaviour_sequence),
    "fwfm": Builder("FwFM"),
    "pnn": Builder("PNN", _dnn_only),  # no linear part
}


def feature_columns(field_dims: dict[str, int], cfg: TrainConfig) -> list:
    """One SparseFeat per field of config.FIELDS, in that order, all of cfg.embedding_dim; then, as cfg says,
    the liked-history VarLenSparseFeat and the two-stage ranker's retrieval rank and scores.

    AutoInt concatenates every field's embedding for its attention, so all share one embedding_dim; the
    pooled history joins the attention as one more field. DeepCTR masks index 0 of a VarLenSparseFeat, so
    models with history code every field from 1 (cfg.coded_from_one). In DeepCTR 0.9.4 a shared
    embedding_name silently takes the varlen feature's table settings, so history is declared with
    exactly movie_id's size and dimension. A sequence architecture gets the liked history as SEQUENCE_INPUT with
    its length in SEQUENCE_LENGTH instead (history_inputs).
    """
    quiet_imports.deepctr()
    from deepctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat

    shift = int(cfg.coded_from_one)
    columns = [
        SparseFeat(field, vocabulary_size=field_dims[field] + shift, embedding_dim=cfg.embedding_dim)
        for field in config.FIELDS
    ]
    movie = columns[config.FIELDS.index(SEQUENCE_FIELD)]
    sequence = BUILDERS[cfg.architecture].sequence
    liked = (SEQUENCE_INPUT, SEQUENCE_LENGTH) if sequence else ("history", None)
    for (name, length_name), length in ((liked, cfg.history), (("disliked_history", None), cfg.disliked_history)):
        if length:
            field = SparseFeat(
                name,
                vocabulary_size=movie.vocabulary_size,
                embedding_dim=movie.embedding_dim,
                embedding_name="movie_id",
            )
            columns.append(VarLenSparseFeat(field, maxlen=length, combiner="mean", length_name=length_name))
    if cfg.candidates:
        columns.append(
            SparseFeat("retrieval_rank", vocabulary_size=len(config.RANK_EDGES) + 1, embedding_dim=cfg.embedding_dim)
        )
        scores = score_fields(cfg)
        columns += [DenseFeat(name, 1) for name in scores]
        if cfg.score_buckets:
            columns += [
                SparseFeat(f"{name}_bucket", vocabulary_size=config.SCORE_BUCKETS, embedding_dim=cfg.embedding_dim)
                for name in scores
            ]
    return columns


def score_fields(cfg: TrainConfig) -> list[str]:
    """The retrieval-score fields a two-stage ranker with cfg's settings reads (pipeline.ranking.ranker_inputs)."""
    scores = ["retrieval_score", "disliked_score", "rated_score"]
    scores += ["recent_score"] if cfg.recent_liked else []
    return scores + (["als_score", "als_rated_score"] if cfg.als_scores else [])


def history_inputs(history: np.ndarray, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The liked-history inputs of cfg's architecture from history rows (right-aligned, 0 pads on the left:
    history.user_histories). A sequence architecture gets them left-aligned with their lengths, because BST masks
    the positions from the length on (its Transformer and attention pooling take the length, not the zero mask)."""
    if not BUILDERS[cfg.architecture].sequence:
        return {"history": history}
    width = history.shape[1]
    lengths = (history > 0).sum(axis=1)
    shifted = (np.arange(width) + (width - lengths)[:, None]) % width
    return {SEQUENCE_INPUT: np.take_along_axis(history, shifted, axis=1), SEQUENCE_LENGTH: lengths}


def build_model(field_dims: dict[str, int], cfg: TrainConfig):
    """DeepCTR's model of cfg.architecture with cfg's settings, compiled with Adam and binary cross-entropy."""
    tf = quiet_imports.tensorflow()
    quiet_imports.deepctr()
    from deepctr import models

    builder = BUILDERS[cfg.architecture]
    constructor = getattr(models, builder.constructor)
    settings = {name: getattr(cfg, name) for name in builder.settings}
    model = constructor(*builder.columns(feature_columns(field_dims, cfg)), **settings, seed=cfg.seed, task="binary")
    ema = {"use_ema": True, "ema_momentum": cfg.ema_momentum} if cfg.ema_momentum else {}
    model.compile(tf.keras.optimizers.Adam(cfg.learning_rate, **ema), "binary_crossentropy")
    # Adam's slot variables made now rather than in fit's first step, so TensorFlow traces the train step once
    # instead of twice (a third less CPU for a small model; the same zeros, so the same training). The listwise
    # loss fits another optimizer (ranker.trainable): this one is never stepped, and built it would be saved
    # with the model (zeros, twice its weights).
    if cfg.loss != "listwise":
        model.optimizer.build(model.trainable_variables)
    return model


def model_inputs(
    frame: pd.DataFrame, cfg: TrainConfig | None = None, histories: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """A 14-field model's input dict for rows that carry the 14 field codes (shifted by one when cfg says
    so), with the row-aligned history arrays the model reads (history.row_histories)."""
    shift = int(cfg.coded_from_one) if cfg else 0
    return {**{field: frame[field].to_numpy(dtype="int64") + shift for field in config.FIELDS}, **(histories or {})}
