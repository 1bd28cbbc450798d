"""The Makefile's rebuild rules, with the real GNU make on a copy of the repository whose Python stages are
replaced by a stand-in that only records its command line and touches the file a stage makes.

What a user means: a second `make all` redoes nothing; editing a comment or another model's settings
in config.py retrains nothing; a model retrains when its own settings change; a one-off training option
is not undone by a later plain `make all`; a typo in MODEL= is one clear line and exit code 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

STAND_IN = r"""
import os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["STAGE_LOG"], "a") as log:
    log.write(" ".join(args[2:]) + "\n")
command = args[2]
def option(name, default=None):
    return args[args.index(name) + 1] if name in args else default
made = {
    "preprocess": ["data/processed/encoders.json"],
    "evaluate": {"product": ["artifacts/metrics.json"], "study": ["artifacts/study/metrics.json"],
                 "reference": ["artifacts/repro/metrics.json"]}.get(option("--path", "product"), []),
    "report": ["artifacts/report.md"],
}.get(command, [])
if command == "train":
    split = option("--split", "random")
    made = [f"artifacts/models/{'' if split == 'random' else split + '/'}{option('--model')}.keras"]
if command == "precompute":
    made = [f"artifacts/precomputed/{name}.parquet" for name in ("autoint_two_stage", "autoint_mlp_two_stage")]
if command == "export":
    served = ["autoint_two_stage", "autoint_mlp_two_stage", "autoint", "autoint_mlp"]
    names = [args[i + 1] for i, arg in enumerate(args) if arg == "--model"] or served
    variants = [args[i + 1] for i, arg in enumerate(args) if arg == "--variant"] or ["float32"]
    folder = option("--models-dir", "artifacts/models")
    made = [f"{folder}/{name}{'' if v == 'float32' else '.' + v}.tflite" for name in names for v in variants]
if command in ("retrieval", "candidates"):
    split = option("--split", "random")
    made_file = "retrieval.npz" if command == "retrieval" else "candidate_lists/lists.json"
    made = [f"artifacts/models/{'' if split == 'random' else split + '/'}{made_file}"]
for path in made:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).touch()
"""


@pytest.fixture
def tree(tmp_path):
    """A copy of the Makefile and the pipeline package, with the raw data and the venv marked present."""
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copytree(REPO / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "requirements-dev.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    for name in ("ratings.dat", "movies.dat", "users.dat"):
        (tmp_path / "data" / "ml-1m").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "ml-1m" / name).touch()
    (tmp_path / ".venv").mkdir()
    time.sleep(0.01)
    (tmp_path / ".venv" / ".installed").touch()
    return tmp_path


def make(tree: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run make in `tree`; returns the result and the stage commands the stand-in ran."""
    log = tree / "stages.log"
    log.write_text("")
    done = subprocess.run(
        ["make", f"PY={sys.executable} stand_in.py", f"PYTHON={sys.executable}", *args],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STAGE_LOG": str(log)},
    )
    return done, [line for line in log.read_text().splitlines() if line]


def trained(stages: list[str]) -> list[str]:
    return [stage.split("--model ")[1].split()[0] for stage in stages if stage.startswith("train")]


def edit_config(tree: Path, old: str, new: str) -> None:
    path = tree / "pipeline" / "config.py"
    text = path.read_text()
    assert old in text
    time.sleep(0.01)
    path.write_text(text.replace(old, new, 1))


def test_a_second_make_all_redoes_nothing(tree):
    done, stages = make(tree, "all")
    assert done.returncode == 0, done.stderr
    assert [stage.split()[0] for stage in stages] == [
        "preprocess",
        "train",
        "train",
        "candidates",
        "train",
        "train",
        "retrieval",
        "evaluate",
        "report",
        *["export"] * 4,  # one per served model, so that a retrained one re-exports only itself
        "precompute",
        "recommend",
    ]
    assert sorted(trained(stages)) == sorted(["autoint", "autoint_mlp", "autoint_two_stage", "autoint_mlp_two_stage"])
    done, stages = make(tree, "all")
    assert done.returncode == 0, done.stderr
    assert stages == ["recommend --user 3"]


def test_a_comment_or_another_models_settings_retrain_nothing_and_a_models_own_settings_retrain_it(tree):
    make(tree, "all")
    edit_config(tree, "# --- Models ---", "# a comment a reader added\n# --- Models ---")
    edit_config(
        tree,
        'model="autoint_tuned",\n        learning_rate=1e-3,\n        epochs=7,',
        'model="autoint_tuned",\n        learning_rate=1e-3,\n        epochs=9,',
    )
    done, stages = make(tree, "all")
    assert done.returncode == 0, done.stderr
    assert stages == ["recommend --user 3"]
    edit_config(
        tree,
        'architecture="autoint_mlp", dnn_hidden_units=(32, 32), dnn_dropout=0.4',
        'architecture="autoint_mlp", dnn_hidden_units=(32, 32), dnn_dropout=0.3',
    )
    done, stages = make(tree, "all")
    assert trained(stages) == ["autoint_mlp"]
    assert [stage.split()[0] for stage in stages] == ["train", "evaluate", "report", "export", "recommend"]
    assert "export --model autoint_mlp" in stages
    edit_config(
        tree,
        'architecture="autoint_mlp",\n        dnn_hidden_units=(64, 32),',
        'architecture="autoint_mlp",\n        dnn_hidden_units=(64, 16),',
    )
    done, stages = make(tree, "all")
    assert trained(stages) == ["autoint_mlp_two_stage"]
    assert [stage.split()[0] for stage in stages] == [
        "train",
        "evaluate",
        "report",
        "export",
        "precompute",
        "recommend",
    ]


def test_code_changes_retrain_only_the_models_that_code_trains(tree):
    make(tree, "all")
    time.sleep(0.01)
    (tree / "pipeline" / "training" / "ranker.py").write_text(
        (tree / "pipeline" / "training" / "ranker.py").read_text() + "\n"
    )
    done, stages = make(tree, "all")
    assert sorted(trained(stages)) == ["autoint_mlp_two_stage", "autoint_two_stage"]
    assert "precompute" in [stage.split()[0] for stage in stages]
    time.sleep(0.01)
    (tree / "pipeline" / "evaluation" / "report.py").write_text(
        (tree / "pipeline" / "evaluation" / "report.py").read_text() + "\n"
    )
    done, stages = make(tree, "all")
    assert [stage.split()[0] for stage in stages] == ["report", "recommend"]


def test_a_one_off_option_is_kept_and_named_until_the_model_is_trained_at_its_defaults(tree):
    make(tree, "all")
    done, stages = make(tree, "train", "MODEL=autoint_mlp", "EPOCHS=2")
    assert done.returncode == 0, done.stderr
    assert trained(stages) == ["autoint_mlp"]
    settings = (tree / "artifacts" / "models" / "autoint_mlp.settings.json").read_text()
    assert '"epochs": 2' in settings
    done, stages = make(tree, "all")
    assert trained(stages) == []  # a plain make all does not retrain it at its defaults ...
    assert "NOTE: autoint_mlp (random) keeps the one-off options epochs=2" in done.stderr  # ... and says so
    done, stages = make(tree, "train", "MODEL=autoint_mlp")
    assert trained(stages) == ["autoint_mlp"]
    assert '"epochs": 5' in (tree / "artifacts" / "models" / "autoint_mlp.settings.json").read_text()
    done, _ = make(tree, "all")
    assert "NOTE" not in done.stderr


def test_make_train_takes_every_declared_training_option_by_its_variable(tree):
    import json

    from pipeline import settings_files

    done, stages = make(tree, "train", "MODEL=autoint", "EPOCHS=3", "LR=1e-3", "FRESH_NEGATIVES=1")
    assert done.returncode == 0, done.stderr
    assert [stage.split()[0] for stage in stages] == ["preprocess", "train"] and trained(stages) == ["autoint"]
    settings = json.loads((tree / "artifacts" / "models" / "autoint.settings.json").read_text())
    assert settings["overrides"] == {"epochs": 3, "learning_rate": 1e-3, "fresh_negatives": True}
    assert (settings["config"]["epochs"], settings["config"]["learning_rate"]) == (3, 1e-3)
    listed = (tree / "artifacts" / "models" / "models.mk").read_text().split("TRAIN_OPTIONS := ")[1].split("\n")[0]
    assert listed.split() == [
        f"{name}={settings_files.make_variable(field)}" for name, field in settings_files.OPTIONS.items()
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", "MODEL=autoint_mpl"), "unknown model 'autoint_mpl'"),
        (("train", "MODEL=both"), "unknown model 'both'"),
        (("train", "MODEL=autoint", "EPOCHS=two"), "epochs must be int, not 'two'"),
        (("all", "EPOCHS=2"), "training options apply to one model"),
        (("train", "MODEL=autoint", "NEGATIVE_SAMPLER=zipf"), "negative_sampler must be one of uniform, popularity"),
    ],
)
def test_a_mistake_in_make_train_is_one_clear_line_and_exit_2(tree, args, message):
    done, stages = make(tree, *args)
    assert done.returncode == 2 and stages == []
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr


def test_clean_keeps_the_tuning_search(tree):
    make(tree, "all")
    (tree / "artifacts" / "tuning.json").write_text("{}")
    done, _ = make(tree, "clean")
    assert done.returncode == 0
    assert (tree / "artifacts" / "tuning.json").is_file() and not (tree / "artifacts" / "metrics.json").exists()
    make(tree, "clean-tuning")
    assert not (tree / "artifacts" / "tuning.json").exists()


def test_make_recommend_takes_an_architecture_and_model_as_its_old_name(tree):
    make(tree, "all")
    for variable in ("ARCHITECTURE=both", "MODEL=both"):
        done, stages = make(tree, "recommend", variable, "USER=7")
        assert done.returncode == 0, done.stderr
        assert stages == ["recommend --user 7 --architecture both"]


def test_make_all_on_synthetic_data_runs_the_stages_the_scale_bench_times(tree):
    from pipeline import config
    from pipeline.bench import scale_bench

    done, stages = make(tree, "all", "DATA=synthetic-1M")
    assert done.returncode == 0, done.stderr
    assert stages[0] == "synth --ratings 1M" and stages[-1].startswith("recommend --user 3 --architecture autoint_mlp")
    root = f"{config.ROOT}/"
    benched = {
        stage: " ".join(argument.replace(root, "") for argument in arguments[2:])
        for stage, arguments in scale_bench.stage_commands("1M").items()
    }
    for stage in ("retrieval", "candidates", "ranker epoch", "export", "evaluate", "precompute"):
        assert benched[stage] in stages, (stage, benched[stage], stages)
    # Its own folders, never ML-1M's; and a DATA that names no synthetic set is one line.
    assert all("/synthetic-1m/" in stage for stage in stages[1:])
    done, _ = make(tree, "all", "DATA=movielens-25m")
    assert done.returncode == 2 and "expected synthetic-<size>" in done.stderr
