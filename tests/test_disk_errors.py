"""Errors of the file system in a stage: one line naming the path and the error, exit code 2, no partial output.

A full disk is real here without root: the temporary name a writer will use is made a link to /dev/full, which
answers every write with ENOSPC, so pyarrow, numpy, Keras and json really fail as on a full disk; a file-size
limit (ulimit -f) gives the same through `python -m pipeline preprocess` in a new process. A read-only or
forbidden folder is the rename refused as the kernel refuses it, and a real folder without write permission (chmod;
as root, with the rights that bypass it dropped)."""

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import cli, config, files, manifests
from pipeline.ranking import architecture, model_files

REPO = Path(__file__).resolve().parent.parent
FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def disk_full_for(path: Path) -> None:
    """The next atomic write of `path` by this process goes to /dev/full."""
    (path.parent / f".tmp-{os.getpid()}-{path.name}").symlink_to(FULL)


def assert_nothing_half_written(folder: Path, *kept: str) -> None:
    assert sorted(entry.name for entry in folder.iterdir()) == sorted(kept)


@needs_dev_full
def test_a_full_disk_while_writing_a_table_names_the_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "train.parquet"
    disk_full_for(target)
    with pytest.raises(OSError) as raised:
        files.write_parquet(target, pd.DataFrame({"rating": np.arange(100_000)}), producer="make preprocess")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert files.describe_os_error(raised.value).startswith(f"{target}: No space left on device (free some space")
    assert_nothing_half_written(tmp_path)


@needs_dev_full
def test_a_full_disk_while_saving_a_model_keeps_the_old_model_and_its_manifest(tmp_path):
    model = architecture.build_model(dict.fromkeys(config.FIELDS, 5), config.MODELS["autoint"])  # never trained
    log = {"config": {"model": "autoint"}}
    path = model_files.save_model(model, log, "autoint", "random", tmp_path)
    before = (path.read_bytes(), manifests.manifest_path(path).read_text())
    disk_full_for(path)
    with pytest.raises(OSError) as raised:
        model_files.save_model(model, log, "autoint", "random", tmp_path)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert (path.read_bytes(), manifests.manifest_path(path).read_text()) == before
    model_files.check_model("autoint", "random", tmp_path)


@needs_dev_full
@pytest.mark.parametrize("what", ["the file", "its manifest"])
def test_a_full_disk_leaves_the_old_file_and_manifest_whichever_write_fails(tmp_path, what):
    target = tmp_path / "retrieval.npz"
    with files.atomic_path(target, producer="make retrieval") as tmp:
        np.savez(tmp, weights=np.ones(10))
    before = (target.read_bytes(), manifests.manifest_path(target).read_text())
    disk_full_for(target if what == "the file" else manifests.manifest_path(target))
    with pytest.raises(OSError) as raised:
        with files.atomic_path(target, producer="make retrieval") as tmp:
            np.savez(tmp, weights=np.zeros(100_000))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert (target.read_bytes(), manifests.manifest_path(target).read_text()) == before
    assert_nothing_half_written(tmp_path, "retrieval.npz", "retrieval.npz.manifest.json")


def without_raw_writes(limit_bytes: int):
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


def test_a_stage_that_cannot_write_its_output_is_one_line_from_a_new_process(raw_dir, tmp_path):
    out = tmp_path / "processed"
    command = [sys.executable, "-m", "pipeline", "preprocess", "--raw-dir", str(raw_dir), "--out-dir", str(out)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=without_raw_writes(20_000)
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {out}/") and "File too large" in line, line
    assert not (out / "encoders.json").exists()  # the stage's make target: make runs it again
    assert not [entry for entry in out.iterdir() if entry.name.startswith(".tmp-")]


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_an_os_error_in_any_stage_is_one_line_naming_the_path(raw_dir, tmp_path, monkeypatch, capsys, code):
    out = tmp_path / "processed"

    def refused(source, destination):  # as the kernel refuses a rename on a read-only or forbidden folder
        raise OSError(code, os.strerror(code), str(source), None, str(destination))

    monkeypatch.setattr(os, "replace", refused)
    monkeypatch.setattr(sys, "argv", ["pipeline", "preprocess", "--raw-dir", str(raw_dir), "--out-dir", str(out)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {out}/") and os.strerror(code) in err, err
    assert not [entry for entry in out.rglob("*") if entry.is_file()]  # nothing renamed, every temporary gone


def test_other_os_errors_are_bugs_and_still_raise(monkeypatch):
    def bug(**_):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(cli, "app", bug)
    with pytest.raises(OSError, match="Bad file descriptor"):
        cli.main()


# Root writes into any folder; without the capabilities that let it (setpriv drops them) it is refused as anyone.
AS_ANYONE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []


@pytest.mark.skipif(
    AS_ANYONE != [] and shutil.which("setpriv") is None, reason="root, and no setpriv to drop its rights"
)
def test_a_folder_without_write_permission_is_one_line(raw_dir, tmp_path):
    out = tmp_path / "processed"
    out.mkdir()
    out.chmod(0o555)
    try:
        command = [sys.executable, "-m", "pipeline", "preprocess", "--raw-dir", str(raw_dir), "--out-dir", str(out)]
        done = subprocess.run([*AS_ANYONE, *command], cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        out.chmod(0o755)
    assert done.returncode == 2 and "Permission denied" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not list(out.iterdir())
