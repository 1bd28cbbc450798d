"""The two-stage ranker streamed from its list shards: which lists an epoch reads, on one worker and on two."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline import config
from pipeline.cli import app
from pipeline.data import preprocess, raw_files
from pipeline.ranking import list_shards, model_files
from pipeline.training import list_streaming, ranker
from tests.conftest import small_config


@pytest.fixture(scope="module")
def data(raw_dir):
    return preprocess.preprocess(*raw_files.read_raw(raw_dir))


@pytest.fixture(scope="module")
def cfg():
    return small_config("autoint_mlp_two_stage", history=6, validation_split=0.2)


@pytest.fixture(scope="module")
def folder(data, cfg, tmp_path_factory):
    folds = ranker.fold_lists(data.train, data.users, len(data.movies), cfg, chunk_users=9)
    return list_shards.write(
        tmp_path_factory.mktemp("lists") / "lists", folds, ranker.list_settings(cfg, len(data.movies))
    )


def keys(lists) -> list[tuple]:
    """A list's identity: its owner and its candidates (a user has one list per fold)."""
    return [(owner, *movies) for owner, movies in zip(lists.owner, lists.movies)]


def test_an_epoch_reads_every_training_list_once_and_holds_out_the_in_memory_trainers_users(data, cfg, folder):
    plan = list_streaming.ListPlan.open(folder, len(data.users), cfg)
    every = list_shards.load(folder)[0]
    held = np.isin(every.owner, ranker.validation_owners(len(data.users), cfg, np.random.default_rng(cfg.seed)))
    assert 0 < held.sum() < len(every)
    batches = list(list_streaming.list_batches(plan, "train", epoch=0, lists_per_batch=5))
    assert all(len(batch) == 5 for batch in batches[:-1]) and 0 < len(batches[-1]) <= 5
    streamed = [key for batch in batches for key in keys(batch)]
    assert sorted(streamed) == sorted(keys(every.take(~held)))
    assert streamed != keys(every.take(~held))  # shuffled, not in file order
    second = [key for batch in list_streaming.list_batches(plan, "train", 1, 5) for key in keys(batch)]
    assert second != streamed and sorted(second) == sorted(streamed)
    validation = [key for batch in list_streaming.list_batches(plan, "validation", 0, 5) for key in keys(batch)]
    assert validation == keys(every.take(held))
    assert plan.lists_in("train") == (~held).sum() and plan.lists_in("validation") == held.sum()


def test_training_lists_are_anonymized_as_in_memory(data, cfg, folder):
    cfg = dataclasses.replace(cfg, anonymous_share=0.5, newcomer_share=1.0)
    plan = list_streaming.ListPlan.open(folder, len(data.users), cfg)
    lists = [batch for batch in list_streaming.list_batches(plan, "train", 0, 50)]
    profiles = np.concatenate([batch.profile for batch in lists])
    anonymous = profiles[:, 0] == 0
    assert 0.3 < anonymous.mean() < 0.7
    disliked = np.concatenate([batch.disliked for batch in lists])
    assert (disliked[anonymous] == 0).all() and (disliked[~anonymous] != 0).any()


def test_two_workers_split_the_lists_and_run_the_same_number_of_steps(data, cfg, folder):
    plan = list_streaming.ListPlan.open(folder, len(data.users), cfg)
    parts = [
        [key for batch in list_streaming.list_batches(plan, "train", 0, 4, worker, 2) for key in keys(batch)]
        for worker in (0, 1)
    ]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(
        key for batch in list_streaming.list_batches(plan, "train", 0, 8) for key in keys(batch)
    )
    steps = list_streaming.steps_per_epoch(plan, "train", lists_per_batch=8, workers=2)
    assert steps == min(plan.lists_in("train", w, 2) // 4 for w in (0, 1)) > 0
    cut = dataclasses.replace(cfg, epoch_lists=20)
    assert list_streaming.steps_per_epoch(dataclasses.replace(plan, cfg=cut), "train", 8, 1) == 3


def test_train_streaming_fits_the_ranker_from_its_shards(small_processed, tmp_path):
    models = tmp_path / "models"
    runner = CliRunner()
    made = runner.invoke(app, ["candidates", "--processed-dir", str(small_processed), "--models-dir", str(models)])
    assert made.exit_code == 0, made.output
    options = ["--processed-dir", str(small_processed), "--models-dir", str(models), "--att-layer-num", "1"]
    trained = runner.invoke(
        app,
        [
            "train",
            "--model",
            "autoint_mlp_two_stage",
            "--streaming",
            "--candidate-lists",
            str(models / "candidate_lists"),
            "--epoch-lists",
            "300",
            *options,
        ],
    )
    assert trained.exit_code == 0, trained.output
    log = json.loads((models / "autoint_mlp_two_stage.training_log.json").read_text())
    lists_per_batch = (
        config.MODELS["autoint_mlp_two_stage"].batch_size // config.MODELS["autoint_mlp_two_stage"].candidates
    )
    assert log["input"]["mode"] == "streaming" and 300 <= log["input"]["epoch_lists"] < 300 + lists_per_batch
    assert np.isfinite(log["epochs"][0]["loss"]) and np.isfinite(log["epochs"][0]["val_loss"])
    model_files.load_keras(models / "autoint_mlp_two_stage.keras")
    # Lists made with other settings, or none at all: one line naming the command that makes them.
    other = runner.invoke(
        app,
        [
            "train",
            "--model",
            "autoint_mlp_two_stage",
            "--streaming",
            "--candidates",
            "30",
            "--candidate-lists",
            str(models / "candidate_lists"),
            *options,
        ],
    )
    assert other.exit_code == 2 and other.output.count("\n") == 1 and "make candidates" in other.output
    absent = runner.invoke(app, ["train", "--model", "autoint_two_stage", "--streaming", *options])
    assert absent.exit_code == 2 and "make candidates" in absent.output
