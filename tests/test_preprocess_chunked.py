"""The preprocess stage reads ratings.dat in chunks and writes its tables row group by row group: however it is
cut, it writes the same tables, and the same files as the in-memory preprocess saved by pandas."""

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from pipeline.data import preprocess, raw_files
from pipeline.data.processed import save_processed

TABLES = ("train", "test", "temporal_train", "temporal_test", "movies", "users")
FILES = (*(f"{name}.parquet" for name in TABLES), "encoders.json")
CHUNK_ROWS, ROW_GROUP_ROWS = 97, 1000


def tables(folder) -> dict:
    frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES}
    return {**frames, "encoders": json.loads((folder / "encoders.json").read_text())}


def assert_same_tables(folder, expected_folder) -> None:
    got, expected = tables(folder), tables(expected_folder)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True)
    assert got["encoders"] == expected["encoders"]


@pytest.fixture(scope="module")
def whole(raw_dir, tmp_path_factory):
    """ratings.dat read in one chunk, each table one row group."""
    out = tmp_path_factory.mktemp("whole")
    preprocess.preprocess_files(raw_dir, out, chunk_rows=10**9)
    return out


@pytest.fixture(scope="module")
def chunked(raw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("chunked")
    preprocess.preprocess_files(raw_dir, out, chunk_rows=CHUNK_ROWS, row_group_rows=ROW_GROUP_ROWS)
    return out


def test_tiny_chunks_and_row_groups_write_the_same_tables_as_one_chunk(raw_dir, whole, chunked):
    ratings = len((raw_dir / "ratings.dat").read_bytes().splitlines())
    chunks = list(raw_files.read_ratings_chunks(raw_dir / "ratings.dat", CHUNK_ROWS))
    assert len(chunks) == math.ceil(ratings / CHUNK_ROWS) > 100 and max(map(len, chunks)) == CHUNK_ROWS
    assert_same_tables(chunked, whole)
    for name in ("train", "temporal_test"):
        rows = pq.ParquetFile(chunked / f"{name}.parquet").metadata
        assert rows.num_row_groups == math.ceil(rows.num_rows / ROW_GROUP_ROWS) > 1
        assert pq.ParquetFile(whole / f"{name}.parquet").metadata.num_row_groups == 1
    assert not [path for path in chunked.iterdir() if path.name.startswith(".tmp-")]


def test_files_are_the_ones_pandas_writes_for_the_in_memory_tables(raw_dir, whole, tmp_path):
    save_processed(preprocess.preprocess(*raw_files.read_raw(raw_dir)), tmp_path)
    for name in FILES:
        assert (whole / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_the_order_of_users_dat_and_movies_dat_lines_changes_nothing(raw_dir, whole, tmp_path):
    shuffled = tmp_path / "raw"
    shuffled.mkdir()
    rng = np.random.default_rng(0)
    (shuffled / "ratings.dat").write_bytes((raw_dir / "ratings.dat").read_bytes())
    for name in ("users.dat", "movies.dat"):
        lines = (raw_dir / name).read_bytes().splitlines()
        (shuffled / name).write_bytes(b"\n".join(lines[i] for i in rng.permutation(len(lines))) + b"\n")
    preprocess.preprocess_files(shuffled, tmp_path / "out", chunk_rows=CHUNK_ROWS)
    assert_same_tables(tmp_path / "out", whole)


def run_command(*arguments: str):
    app = typer.Typer()
    app.command()(preprocess.preprocess_command)
    return CliRunner().invoke(app, list(arguments))


@pytest.mark.parametrize(
    "last_line, says",
    [
        (b"999999::1::5::978300760", "missing from users.dat/movies.dat"),
        (b"1::1::five::978300760", "invalid literal"),
        (b"1::1::9::978300760", "ratings must be 1..5"),
    ],
)
def test_a_damaged_rating_line_is_one_clear_error(raw_dir, tmp_path, last_line, says):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("users.dat", "movies.dat"):
        (raw / name).write_bytes((raw_dir / name).read_bytes())
    (raw / "ratings.dat").write_bytes((raw_dir / "ratings.dat").read_bytes() + last_line + b"\n")
    out = tmp_path / "out"
    result = run_command("--raw-dir", str(raw), "--out-dir", str(out))
    assert result.exit_code == 2
    assert says in result.output and len(result.output.strip().splitlines()) == 1
    assert not (out / "encoders.json").exists()
