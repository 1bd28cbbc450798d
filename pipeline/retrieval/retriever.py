"""The retrieval stage behind one interface: a liked list in → K candidates and their scores out.

Two kinds implement it (pipeline.retrieval.base.Retriever): EASE (ease.py), movie × movie weights fitted in
closed form, the better of the two on ML-1M; and ALS (als.py, the `implicit` library), movie factors whose
memory does not grow with the catalogue squared. config.RETRIEVAL["kind"] picks one; unset (None), EASE
serves catalogues of up to config.RETRIEVAL["ease_max_movies"] movies and ALS larger ones. An EASE stage also
fits ALS beside it (config.RETRIEVAL["als_beside_ease"]): EASE proposes the candidates, and the default ranker reads
ALS's scores of them too (TrainConfig.als_scores).

Outputs: artifacts/models/[<split>/]retrieval.npz (`python -m pipeline retrieval`): the kind and its arrays
(and those of the ALS beside it, prefixed "als_"), read back by `load` as the right kind.
"""

from __future__ import annotations

import dataclasses
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config
from pipeline.files import atomic_path, record_timing
from pipeline.retrieval import als, ease
from pipeline.retrieval.base import Retriever, interaction_matrix, liked_matrix

__all__ = [
    "Retriever",
    "fit",
    "fit_liked",
    "interaction_matrix",
    "kind_for",
    "liked_matrix",
    "load",
    "path",
    "save",
    "settings",
]

KINDS = {"ease": ease.Retrieval, "als": als.Retrieval}


def kind_for(n_movies: int) -> str:
    """The kind config.RETRIEVAL asks for a catalogue of n_movies movies."""
    kind = config.RETRIEVAL["kind"]
    if kind is None:
        return "ease" if n_movies <= config.RETRIEVAL["ease_max_movies"] else "als"
    if kind not in KINDS:
        raise ValueError(f"unknown retrieval kind {kind!r} in config.RETRIEVAL; expected one of {', '.join(KINDS)}")
    return kind


def settings(n_movies: int) -> dict:
    """What decides the retrieval model fitted for a catalogue of n_movies movies: its kind and its parameters
    (lists and files made from a retrieval model are stale when this changes)."""
    kind = kind_for(n_movies)
    if kind == "ease":
        beside = {"als": config.RETRIEVAL["als"]} if config.RETRIEVAL["als_beside_ease"] else {}
        return {"kind": kind, "ease_l2": config.EASE_L2, **beside}
    return {"kind": kind, **config.RETRIEVAL["als"]}


def fit(train: pd.DataFrame, n_users: int, n_movies: int, kind: str | None = None) -> Retriever:
    """Both models of the retrieval stage (liked, every rating) fitted on `train` (columns user_id, movie_id
    as codes below n_users / n_movies, label 1 liked / 0 not), of `kind` (None: kind_for(n_movies)); an EASE
    one with both ALS models fitted beside it when config.RETRIEVAL["als_beside_ease"] (Retriever.als)."""
    kind = kind or kind_for(n_movies)
    if kind == "ease":
        fitted = ease.fit(train, n_users, n_movies)
        if config.RETRIEVAL["als_beside_ease"]:
            fitted = dataclasses.replace(fitted, als=als.fit(train, n_users, n_movies))
        return fitted
    if kind == "als":
        return als.fit(train, n_users, n_movies)
    raise ValueError(f"unknown retrieval kind {kind!r}; expected one of {', '.join(KINDS)}")


def fit_liked(train: pd.DataFrame, n_users: int, n_movies: int, kind: str) -> Retriever:
    """The liked model alone of `kind` fitted on `train`, standing in for both models (a retrieval-alone
    baseline reads the liked model only, so the every-rating fit is skipped: half the time)."""
    liked = liked_matrix(train, n_users, n_movies)
    if kind == "ease":
        weights = ease.ease_weights(liked)
        return ease.Retrieval(weights, weights)
    if kind == "als":
        settings = config.RETRIEVAL["als"]
        factors = als.item_factors(liked, settings)
        return als.Retrieval(factors, factors, settings["regularization"], settings["alpha"])
    raise ValueError(f"unknown retrieval kind {kind!r}; expected one of {', '.join(KINDS)}")


def path(split: str = "random", models_dir: Path = config.MODELS_DIR) -> Path:
    return config.model_path("retrieval", split, models_dir).with_suffix(".npz")


# The arrays of an ALS model carried beside EASE are stored under this prefix.
BESIDE = "als_"


def save(retriever: Retriever, target: Path) -> Path:
    arrays = retriever.arrays()
    if retriever.als is not None and retriever.als is not retriever:
        arrays |= {BESIDE + name: values for name, values in retriever.als.arrays().items()}
    with atomic_path(target) as tmp:
        np.savez(tmp, kind=np.str_(retriever.kind), **arrays)
    return target


def mapped_arrays(source: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed .npz (what np.savez writes) as read-only memory maps, without reading them.

    A serving process then reads only the pages its answers touch: a new person's retrieval scores need the
    rows of their liked movies, not all of EASE's 3,706 × 3,706 weights twice (110 MB, ~1 s of a cold
    `make recommend`); and a service's worker processes share one copy in the page cache. (np.load ignores
    mmap_mode for .npz files, so each member's offset is found from its zip header here.)"""
    arrays = {}
    with zipfile.ZipFile(source) as archive, open(source, "rb") as raw:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{source}: {info.filename} is compressed; run `make retrieval`")
            raw.seek(info.header_offset)
            name_length, extra_length = struct.unpack("<HH", raw.read(30)[26:30])  # the local file header
            raw.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(raw)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(raw)
            order = "F" if fortran_order else "C"
            name = info.filename.removesuffix(".npy")
            arrays[name] = np.memmap(source, dtype=dtype, mode="r", offset=raw.tell(), shape=shape, order=order)
    return arrays


def load(source: Path) -> Retriever:
    """The retrieval model `save` wrote at `source`, of whichever kind it is (its arrays memory-mapped)."""
    stored = mapped_arrays(source)
    kind = str(stored["kind"]) if "kind" in stored else None
    if kind not in KINDS:
        raise ValueError(f"{source} holds no retrieval model (kind {kind!r}); run `make retrieval`")
    loaded = KINDS[kind].from_arrays(stored)
    beside = {name.removeprefix(BESIDE): values for name, values in stored.items() if name.startswith(BESIDE)}
    return dataclasses.replace(loaded, als=als.Retrieval.from_arrays(beside)) if beside else loaded


def training_rows(processed_dir: Path, split: str) -> tuple[pd.DataFrame, int, int]:
    """A split's training rows (user_id, movie_id, label only) and the numbers of users and movies.

    Reads three columns of the processed tables that pipeline.data.processed.save_processed wrote, not all
    of them: at 25 M ratings the full tables of both splits would take more memory than the fit."""
    if not (processed_dir / "encoders.json").is_file():
        raise FileNotFoundError(f"{processed_dir}/encoders.json not found; run `make preprocess` first")
    name = {"random": "train", "temporal": "temporal_train"}[split]
    rows = pd.read_parquet(processed_dir / f"{name}.parquet", columns=["user_id", "movie_id", "label"])
    n_users = len(pd.read_parquet(processed_dir / "users.parquet", columns=["user_id"]))
    n_movies = len(pd.read_parquet(processed_dir / "movies.parquet", columns=["movie_id"]))
    return rows, n_users, n_movies


def retrieval_command(
    split: config.Split = typer.Option(config.Split.random, help="The split whose training rows to fit."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Fit the retrieval stage (EASE or ALS, on liked and on all ratings; ALS beside EASE) on a split's training rows
    → retrieval.npz."""

    split = split.value
    started = time.perf_counter()
    try:
        train, n_users, n_movies = training_rows(processed_dir, split)
        chosen = settings(n_movies)
    except (FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    fitted = fit(train, n_users, n_movies, chosen["kind"])
    target = save(fitted, path(split, models_dir))
    seconds = time.perf_counter() - started
    record_timing(models_dir.parent, f"retrieval ({split})", seconds)
    parameters = ", ".join(f"{name} {value:g}" for name, value in chosen.items() if name not in ("kind", "als"))
    beside = " with ALS beside it" if "als" in chosen else ""
    typer.echo(
        f"retrieval ({split}): {chosen['kind'].upper()} ({parameters}){beside} over "
        f"{int((train['label'] == 1).sum()):,} liked and {len(train):,} rated training ratings, "
        f"{fitted.n_movies:,} movies; fitted in {seconds:.0f} s; saved {target}"
    )
