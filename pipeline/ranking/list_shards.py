"""Candidate lists on disk: one parquet file per fold, one parquet row per list, row groups in user order.

A folder of lists (artifacts/models/[<split>/]candidate_lists/) holds fold-<f>.parquet for every fold and
lists.json, written last: the settings the lists were made with and every shard's row-group sizes. A reader
trusts the folder only through lists.json, so a run interrupted before it leaves nothing a trainer reads.

Each column is a CandidateLists field; a field of K values per list is a fixed-size parquet list, so a
row group reads back as (lists, K) NumPy arrays without copying per list. The writer never holds more
than the row group it is writing; the in-memory trainer (load) and the streamed one (read_group) read
the same files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import manifests
from pipeline.files import atomic_path, write_json
from pipeline.ranking.candidates import CandidateLists

INDEX = "lists.json"
REBUILD = "make candidates"
FIELDS = tuple(field.name for field in dataclasses.fields(CandidateLists))


@dataclasses.dataclass(frozen=True)
class Group:
    """One row group of one shard: where it is and how many lists it holds."""

    path: Path
    index: int
    lists: int


def _column(values: np.ndarray) -> pa.Array:
    if values.ndim == 1:
        return pa.array(values)
    flat = pa.array(np.ascontiguousarray(values).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _table(lists: CandidateLists) -> pa.Table:
    columns = {name: getattr(lists, name) for name in FIELDS if getattr(lists, name) is not None}
    return pa.table({name: _column(values) for name, values in columns.items()})


def _arrays(table: pa.Table) -> CandidateLists:
    fields = {}
    for name in FIELDS:
        if name not in table.column_names:
            fields[name] = None
            continue
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
            width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else None
            flat = column.flatten().to_numpy(zero_copy_only=False)
            fields[name] = flat.reshape(len(column), width if width is not None else -1)
        else:
            fields[name] = column.to_numpy(zero_copy_only=False)
    return CandidateLists(**fields)


def write(
    folder: Path, folds: Iterable[tuple[int, Iterable[CandidateLists]]], settings: dict, producer: str = REBUILD
) -> Path:
    """Write each fold's chunks of lists (in user order) as the row groups of fold-<f>.parquet, then
    lists.json, each with its manifest (`producer`: the command that remakes them; a damaged shard makes
    make rebuild lists.json). The folder is built under a temporary name and swapped in whole."""
    folder = Path(folder)
    building = folder.with_name(f".tmp-{os.getpid()}-{folder.name}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    shards = []
    try:
        for fold, chunks in folds:
            name, groups, writer = f"fold-{fold}.parquet", [], None
            with atomic_path(building / name, producer=producer, target=building / INDEX) as tmp:
                try:
                    for chunk in chunks:
                        if not len(chunk):
                            continue
                        table = _table(chunk)
                        writer = writer or pq.ParquetWriter(tmp, table.schema)
                        writer.write_table(table, row_group_size=len(chunk))
                        groups.append(len(chunk))
                finally:
                    if writer is not None:
                        writer.close()
            if groups:
                shards.append({"file": name, "groups": groups})
            else:
                (building / name).unlink(missing_ok=True)
        write_json(building / INDEX, {"settings": settings, "shards": shards}, producer=producer)
        old = folder.with_name(f".old-{os.getpid()}-{folder.name}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(building, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder


def index_path(folder: Path) -> Path:
    return Path(folder) / INDEX


def settings_of(folder: Path) -> dict | None:
    """The settings the lists in `folder` were made with, or None when it holds no finished lists."""
    index = index_path(folder)
    if not index.is_file():
        return None
    with manifests.checked(index) as readable:
        return json.loads(readable.read_text())["settings"]


def groups(folder: Path) -> list[Group]:
    """Every row group of the folder's shards, fold by fold, in user order within a fold."""
    with manifests.checked(index_path(folder)) as readable:
        index = json.loads(readable.read_text())
    return [
        Group(Path(folder) / shard["file"], position, size)
        for shard in index["shards"]
        for position, size in enumerate(shard["groups"])
    ]


def read_group(group: Group, columns: list[str] | None = None) -> CandidateLists:
    """One row group's lists (only `columns` filled when given; the others None)."""
    with manifests.checked(group.path) as readable:
        return _arrays(pq.ParquetFile(readable).read_row_group(group.index, columns=columns))


def owners(group: Group) -> np.ndarray:
    """The owner column of one row group (what the streamed trainer counts its steps from)."""
    with manifests.checked(group.path) as readable:
        return pq.ParquetFile(readable).read_row_group(group.index, columns=["owner"]).column("owner").to_numpy()


def load(folder: Path) -> tuple[CandidateLists, dict]:
    """Every list of the folder in memory (fold by fold), and the settings they were made with."""
    parts = [read_group(group) for group in groups(folder)]
    return CandidateLists.concat(parts), settings_of(folder)
