"""DeepCTR's AutoInt and AutoInt+MLP built from the feature schema.

An architecture is DeepCTR's off-the-shelf `AutoInt` (`dnn_hidden_units=()` means attention only); a
model is an architecture trained one way (config.MODELS). This module only wires the schema to
DeepCTR: it declares the feature columns, calls the constructor, compiles, saves and loads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import config, quiet_imports
from pipeline.config import TrainConfig


def feature_columns(field_dims: dict[str, int], cfg: TrainConfig) -> list:
    """One SparseFeat per field of config.FIELDS, in that order, all of cfg.embedding_dim; then, as cfg says,
    the liked-history VarLenSparseFeat and the two-stage ranker's retrieval rank and scores.

    AutoInt concatenates every field's embedding for its attention, so all share one embedding_dim; the
    pooled history joins the attention as one more field. DeepCTR masks index 0 of a VarLenSparseFeat, so
    models with history code every field from 1 (cfg.coded_from_one). In DeepCTR 0.9.4 a shared
    embedding_name silently takes the varlen feature's table settings, so history is declared with
    exactly movie_id's size and dimension.
    """
    quiet_imports.deepctr()
    from deepctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat

    shift = int(cfg.coded_from_one)
    columns = [
        SparseFeat(field, vocabulary_size=field_dims[field] + shift, embedding_dim=cfg.embedding_dim)
        for field in config.FIELDS
    ]
    movie = columns[config.FIELDS.index("movie_id")]
    for name, length in (("history", cfg.history), ("disliked_history", cfg.disliked_history)):
        if length:
            field = SparseFeat(
                name,
                vocabulary_size=movie.vocabulary_size,
                embedding_dim=movie.embedding_dim,
                embedding_name="movie_id",
            )
            columns.append(VarLenSparseFeat(field, maxlen=length, combiner="mean"))
    if cfg.candidates:
        columns.append(
            SparseFeat("retrieval_rank", vocabulary_size=len(config.RANK_EDGES) + 1, embedding_dim=cfg.embedding_dim)
        )
        scores = ["retrieval_score", "disliked_score", "rated_score"] + (["recent_score"] if cfg.recent_liked else [])
        columns += [DenseFeat(name, 1) for name in scores]
        if cfg.score_buckets:
            columns += [
                SparseFeat(f"{name}_bucket", vocabulary_size=config.SCORE_BUCKETS, embedding_dim=cfg.embedding_dim)
                for name in scores
            ]
    return columns


def build_model(field_dims: dict[str, int], cfg: TrainConfig):
    """DeepCTR's AutoInt with cfg's settings, compiled with Adam and binary cross-entropy."""
    tf = quiet_imports.tensorflow()
    quiet_imports.deepctr()
    from deepctr.models import AutoInt

    columns = feature_columns(field_dims, cfg)
    # AutoInt always adds a linear term; DeepCTR fails at fit on an empty linear column list.
    model = AutoInt(
        columns,
        columns,
        att_layer_num=cfg.att_layer_num,
        att_head_num=cfg.att_head_num,
        att_res=cfg.att_res,
        dnn_hidden_units=cfg.dnn_hidden_units,
        dnn_activation=cfg.dnn_activation,
        dnn_dropout=cfg.dnn_dropout,
        l2_reg_embedding=cfg.l2_reg_embedding,
        l2_reg_dnn=cfg.l2_reg_dnn,
        seed=cfg.seed,
        task="binary",
    )
    ema = {"use_ema": True, "ema_momentum": cfg.ema_momentum} if cfg.ema_momentum else {}
    model.compile(tf.keras.optimizers.Adam(cfg.learning_rate, **ema), "binary_crossentropy")
    return model


def model_inputs(
    frame: pd.DataFrame, cfg: TrainConfig | None = None, histories: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """A 14-field model's input dict for rows that carry the 14 field codes (shifted by one when cfg says
    so), with the row-aligned history arrays the model reads (history.row_histories)."""
    shift = int(cfg.coded_from_one) if cfg else 0
    return {**{field: frame[field].to_numpy(dtype="int64") + shift for field in config.FIELDS}, **(histories or {})}
