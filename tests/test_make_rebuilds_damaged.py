"""After damage, `make all` rebuilds the damaged file and what depends on it, nothing else: the real Makefile and
its sweep (pipeline/manifests.py) on a copy of the repository whose stages are test_makefile's stand-in, here
also writing what the real stages write: content, a manifest per file, a training log beside each model."""

from __future__ import annotations

import time

from tests.test_makefile import STAND_IN, make, tree  # noqa: F401  (tree: the fixture of the copy)

RECORDING = r"""
from pipeline import manifests
for path in map(Path, made):
    path.write_text("made by " + " ".join(args[2:]) + "\n")
    manifests.write(path, producer="make " + str(path))
    if command == "train":
        log = path.with_suffix(".training_log.json")
        log.write_text("{}\n")
        manifests.write(log, producer="make " + str(path), target=path)
"""


def recording(tree):  # noqa: F811  (the fixture's value)
    (tree / "stand_in.py").write_text(STAND_IN + RECORDING)
    done, stages = make(tree, "all")
    assert done.returncode == 0, done.stderr
    return tree


def damage(path) -> None:
    time.sleep(0.01)
    path.write_text("truncated")


def test_a_damaged_model_retrains_that_model_and_what_it_feeds_only(tree):  # noqa: F811
    recording(tree)
    damage(tree / "artifacts" / "models" / "autoint_mlp_two_stage.keras")
    started = time.perf_counter()
    done, stages = make(tree, "all")
    assert done.returncode == 0, done.stderr
    assert [stage.split()[0] for stage in stages] == [
        "train",
        "evaluate",
        "report",
        "export",
        "precompute",
        "recommend",
    ]
    assert "--model autoint_mlp_two_stage" in stages[0]
    assert "artifacts/models/autoint_mlp_two_stage.keras is damaged" in done.stderr and "moved aside" in done.stderr
    assert (tree / "artifacts" / "models" / ".damaged-autoint_mlp_two_stage.keras").is_file()
    assert time.perf_counter() - started < 30
    done, stages = make(tree, "all")
    assert stages == ["recommend --user 3"] and "damaged" not in done.stderr


def test_a_damaged_training_log_retrains_its_model(tree):  # noqa: F811
    recording(tree)
    damage(tree / "artifacts" / "models" / "autoint.training_log.json")
    done, stages = make(tree, "all")
    assert [stage.split()[0] for stage in stages] == ["train", "evaluate", "report", "export", "recommend"]
    assert "--model autoint " in stages[0] + " "


def test_a_damaged_table_is_precomputed_again_and_nothing_is_trained(tree):  # noqa: F811
    recording(tree)
    damage(tree / "artifacts" / "precomputed" / "autoint_two_stage.parquet")
    done, stages = make(tree, "all")
    assert [stage.split()[0] for stage in stages] == ["precompute", "recommend"]


def test_an_undamaged_tree_is_left_alone(tree):  # noqa: F811
    recording(tree)
    done, stages = make(tree, "all")
    assert stages == ["recommend --user 3"] and done.stderr == ""
    assert not list(tree.glob("artifacts/**/.damaged-*"))
