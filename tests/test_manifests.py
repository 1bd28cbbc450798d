"""Manifests (pipeline/manifests.py) as the writers, the loaders and make use them: a file written with a producer
is recorded; a damaged, truncated or missing one is one line naming it and the command that rebuilds it; the
cheap check reads no bytes of an intact file; the sweep moves only damaged files aside."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import files, manifests

REPO = Path(__file__).resolve().parent.parent
PRODUCER = "make train MODEL=autoint"


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    """Each test starts with nothing verified, as a new process does."""
    monkeypatch.setattr(manifests, "_verified", {})


def recorded(path: Path, text: str = "weights " * 1000, **manifest) -> Path:
    files.write_text(path, text, producer=PRODUCER, **manifest)
    return path


def moved_back_in_time(path: Path, seconds: int = 10) -> None:
    """Another mtime, as a copy without -p or a touch gives (the content is unchanged)."""
    state = path.stat()
    os.utime(path, ns=(state.st_atime_ns, state.st_mtime_ns - seconds * 10**9))


def test_a_recorded_file_has_a_manifest_with_its_size_hash_producer_and_settings(tmp_path):
    path = recorded(tmp_path / "autoint.keras", "abc", settings_digest=manifests.digest({"epochs": 1}))
    manifest = json.loads((tmp_path / "autoint.keras.manifest.json").read_text())
    assert manifest["size"] == 3 and manifest["mtime_ns"] == path.stat().st_mtime_ns
    assert manifest["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    assert manifest["producer"] == PRODUCER and manifest["target"] is None
    assert manifest["settings_digest"] == manifests.digest({"epochs": 1}) != manifests.digest({"epochs": 2})
    manifests.check(path)


def test_a_truncated_file_is_one_line_naming_it_and_the_rebuild_command(tmp_path):
    path = recorded(tmp_path / "autoint.keras")
    with open(path, "r+b") as stream:
        stream.truncate(100)
    with pytest.raises(manifests.ArtifactError) as raised:
        manifests.check(path)
    line = str(raised.value)
    assert str(path) in line and "100 bytes where its manifest says 8,000" in line and f"`{PRODUCER}`" in line
    assert "\n" not in line and not raised.value.missing


def test_the_same_size_with_other_bytes_is_found_by_the_hash(tmp_path):
    path = recorded(tmp_path / "autoint.keras", "a" * 500)
    path.write_text("b" * 500)  # same size, a new mtime
    with pytest.raises(manifests.ArtifactError, match="sha256"):
        manifests.check(path)


def test_an_intact_file_with_the_recorded_mtime_is_not_read_and_a_verified_state_is_not_checked_again(
    tmp_path, monkeypatch
):
    path, other = recorded(tmp_path / "retrieval.npz"), recorded(tmp_path / "other.npz")
    moved_back_in_time(path)
    hashed = []
    real = manifests.sha256_of
    monkeypatch.setattr(manifests, "sha256_of", lambda source: hashed.append(source) or real(source))
    manifests.check(other)  # size and mtime as recorded: not hashed
    manifests.check(path)  # the mtime moved: hashed once, intact
    manifests.check(path)  # the same state again: remembered
    assert hashed == [path]


def test_a_missing_file_says_make_and_a_file_without_manifest_passes(tmp_path):
    with pytest.raises(manifests.ArtifactError) as raised:
        manifests.check(tmp_path / "retrieval.npz", "make retrieval")
    assert raised.value.missing and str(raised.value).endswith("is missing; make it with `make retrieval`")
    unrecorded = tmp_path / "legacy.parquet"
    files.write_text(unrecorded, "written before manifests")
    manifests.check(unrecorded)


def test_a_damaged_manifest_is_damage(tmp_path):
    path = recorded(tmp_path / "autoint.keras")
    manifests.manifest_path(path).write_text('{"size": ')
    with pytest.raises(manifests.ArtifactError, match="damaged manifest"):
        manifests.check(path, PRODUCER)


def test_a_file_that_cannot_be_read_is_one_line_and_file_system_errors_pass_through(tmp_path):
    path = tmp_path / "encoders.json"
    files.write_text(path, '{"fields": ')  # no manifest: only reading it finds the damage
    with pytest.raises(manifests.ArtifactError) as raised:
        with manifests.checked(path, "make preprocess"):
            json.loads(path.read_text())
    assert "cannot be read (JSONDecodeError: Expecting value" in str(raised.value)
    assert str(raised.value).endswith("rebuild it with `make preprocess`")
    with pytest.raises(PermissionError):
        with manifests.checked(path, "make preprocess"):
            raise PermissionError(13, "Permission denied", str(path))


def test_rewriting_without_a_producer_drops_the_old_manifest(tmp_path):
    path = recorded(tmp_path / "metrics.json")
    files.write_text(path, "a new, unrecorded file")
    assert not manifests.manifest_path(path).exists()
    manifests.check(path)


def test_a_failed_write_keeps_the_old_file_and_its_manifest(tmp_path):
    path = recorded(tmp_path / "autoint.keras", "old")
    before = manifests.manifest_path(path).read_text()
    with pytest.raises(RuntimeError):
        with files.atomic_path(path, producer=PRODUCER) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old" and manifests.manifest_path(path).read_text() == before
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["autoint.keras", "autoint.keras.manifest.json"]
    manifests.check(path)


def test_the_sweep_moves_only_damaged_files_aside_with_the_target_they_are_made_with(tmp_path):
    models = tmp_path / "artifacts" / "models"
    model = recorded(models / "autoint.keras")
    log = recorded(models / "autoint.training_log.json", "{}", target=model)
    intact = recorded(models / "autoint_mlp.keras")
    moved_back_in_time(intact)  # a copy or a touch: hashed, intact, its manifest takes the new mtime
    assert manifests.sweep([tmp_path / "artifacts"]) == []
    assert json.loads(manifests.manifest_path(intact).read_text())["mtime_ns"] == intact.stat().st_mtime_ns
    log.write_text("{broken")
    lines = manifests.sweep([tmp_path / "artifacts"])
    assert len(lines) == 1 and str(log) in lines[0] and f"(`{PRODUCER}`)" in lines[0]
    assert not log.exists() and not model.exists() and intact.exists()
    assert (models / ".damaged-autoint.keras").is_file() and (models / ".damaged-autoint.training_log.json").is_file()
    assert not manifests.manifest_path(log).exists() and not manifests.manifest_path(model).exists()
    assert manifests.sweep([tmp_path / "artifacts"]) == []


def test_the_command_line_sweeps_and_checks_with_the_system_python_alone(tmp_path):
    path = recorded(tmp_path / "artifacts" / "precomputed" / "autoint_two_stage.parquet", "table")
    command = [sys.executable, "-S", "-m", "pipeline.manifests"]  # -S: no site-packages, as before .venv exists
    done = subprocess.run([*command, "check", str(path)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    path.write_text("not a table")
    done = subprocess.run([*command, "check", str(path)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is damaged" in done.stderr
    done = subprocess.run([*command, "sweep", str(tmp_path / "artifacts")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and "moved aside" in done.stderr and not path.exists()
