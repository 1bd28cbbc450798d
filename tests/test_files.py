"""Writing files so that an interrupted run never leaves a half-written file behind."""

import json

import pytest

from pipeline import files


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_json(target, {"old": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text('{"new": ')  # half written, then the writer dies
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"old": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_a_finished_write_replaces_the_file_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b" / "report.md"
    files.write_text(target, "first")
    files.write_text(target, "second")
    assert target.read_text() == "second"
    assert [path.name for path in target.parent.iterdir()] == ["report.md"]


def test_a_timing_is_kept_per_stage(tmp_path):
    files.record_timing(tmp_path, "evaluate (product)", 12.345)
    files.record_timing(tmp_path, "evaluate (product)", 20.0)
    stored = json.loads((tmp_path / "timings" / "evaluate-product.json").read_text())
    assert stored["stage"] == "evaluate (product)" and stored["seconds"] == 20.0
