"""`python -m pipeline train`'s command line: the options declared once on TrainConfig, the settings file, overrides
and one-line errors (the training itself is tested in test_train.py)."""

import pytest
from typer.testing import CliRunner

from pipeline.data import preprocess, raw_files
from pipeline.data.processed import save_processed
from pipeline.training import train


def test_command_overrides_and_settings_file_reach_the_model(raw_dir, tmp_path):
    import json

    from pipeline import settings_files
    from pipeline.cli import app

    processed = preprocess.preprocess(*raw_files.read_raw(raw_dir))
    save_processed(processed, tmp_path / "processed")
    settings_files.write_all(
        tmp_path / "models",
        "autoint_mlp",
        "random",
        ["epochs=2", "dnn_hidden_units=8"],
        tmp_path / "processed",
        tmp_path,
    )
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "autoint_mlp",
            "--settings",
            str(tmp_path / "models" / "autoint_mlp.settings.json"),
            "--lr",
            "0.003",
            "--negatives",
            "1",
            "--fresh-negatives",
            "--att-layer-num",
            "1",
            "--processed-dir",
            str(tmp_path / "processed"),
            "--models-dir",
            str(tmp_path / "models"),
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "models" / "autoint_mlp.training_log.json").read_text())["config"]
    assert (cfg["epochs"], cfg["dnn_hidden_units"], cfg["learning_rate"]) == (2, [8], 0.003)
    assert (cfg["negatives"], cfg["fresh_negatives"], cfg["dnn_dropout"]) == (1, True, 0.4)
    assert cfg["att_layer_num"] == 1  # one layer: the options are what is tested, and it trains in less time
    assert [line.split()[0] for line in result.output.splitlines()[-3:-1]] == ["1", "2"]  # the epoch table


def test_command_rejects_unknown_choices_and_missing_data(tmp_path):
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["train", "--model", "deepfm", "--processed-dir", str(tmp_path)])
    assert result.exit_code == 2 and "deepfm" in result.output
    result = CliRunner().invoke(app, ["train", "--model", "autoint", "--processed-dir", str(tmp_path)])
    assert result.exit_code == 2 and "make preprocess" in result.output
    for option, value in (("--negative-sampler", "zipf"), ("--negatives-per", "movie"), ("--split", "weekly")):
        result = CliRunner().invoke(
            app, ["train", "--model", "autoint", option, value, "--processed-dir", str(tmp_path)]
        )
        assert result.exit_code == 2 and value in result.output


def test_every_declared_option_is_in_train_help_and_make_and_nothing_else_is(tmp_path):
    from pipeline import settings_files
    from pipeline.cli import app

    options = settings_files.OPTIONS
    assert {"epochs", "learning_rate", "dnn_hidden_units", "fresh_negatives", "candidates", "history"} <= set(options)
    assert settings_files.flag(options["learning_rate"]) == "--lr"
    assert settings_files.make_variable(options["learning_rate"]) == "LR"
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    lines = settings_files.makefile_variables(tmp_path).splitlines()
    make_options = next(line for line in lines if line.startswith("TRAIN_OPTIONS := ")).split(" := ")[1].split()
    assert make_options == [f"{name}={settings_files.make_variable(field)}" for name, field in options.items()]
    for field in options.values():
        for spelling in settings_files.flag(field).split("/"):
            assert spelling in shown.output
        assert field.metadata["help"] in shown.output
    # A TrainConfig field that is not declared an option is neither a `train` option nor a `--set` field.
    assert "lr_decay" not in options and "model" not in options
    result = CliRunner().invoke(app, ["train", "--model", "autoint", "--lr-decay", "0.5"])
    assert result.exit_code == 2 and "--lr-decay" in result.output
    for assignment in ("lr_decay=0.5", "model=autoint_mlp"):
        with pytest.raises(settings_files.SettingsError, match="unknown training option"):
            settings_files.parse_overrides([assignment])


def test_option_values_are_checked_against_the_declaration():
    from pipeline import settings_files

    parsed = settings_files.parse_overrides(["learning_rate=1e-3", "dnn_hidden_units=(64, 16)", "fresh_negatives=yes"])
    assert parsed == {"learning_rate": 1e-3, "dnn_hidden_units": (64, 16), "fresh_negatives": True}
    for assignment, message in (
        ("epochs=0", "epochs must be >= 1"),
        ("dnn_dropout=1.5", "dnn_dropout must be <= 1.0"),
        ("negative_sampler=zipf", "negative_sampler must be one of uniform, popularity"),
        ("dnn_hidden_units=a", "dnn_hidden_units must be tuple"),
    ):
        with pytest.raises(settings_files.SettingsError, match=message):
            settings_files.parse_overrides([assignment])


def test_option_arguments_give_back_the_same_overrides():
    import typer

    from pipeline.cli import app

    overrides = {
        "epochs": 2,
        "learning_rate": 0.003,
        "dnn_hidden_units": (8, 4),
        "negative_sampler": "popularity",
        "fresh_negatives": False,
        "candidates": 100,
    }
    arguments = train.option_arguments(overrides)
    assert arguments[:4] == ["--epochs", "2", "--lr", "0.003"] and "--fixed-negatives" in arguments
    command = typer.main.get_command(app).commands["train"]
    params = command.make_context("train", ["--model", "autoint", *arguments]).params
    options = {name: value for name, value in params.items() if name in train.settings_files.OPTIONS}
    assert train.overrides_from_options(**options) == overrides
    result = CliRunner().invoke(app, ["train", "--model", "autoint", "--dnn-hidden-units", "8,x"])
    assert result.exit_code == 2 and "--dnn-hidden-units" in result.output
