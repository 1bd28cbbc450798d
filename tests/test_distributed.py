"""`train --workers 2` on loopback: MultiWorkerMirroredStrategy across two real worker processes."""

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline import config
from pipeline.cli import app
from pipeline.data import preprocess, raw_files
from pipeline.data.processed import load_processed, save_processed
from pipeline.ranking import candidates, list_shards, model_files, ranker_inputs, scorers
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.retrieval import retriever
from pipeline.training import distributed, ranker
from tests.fake_movielens import write_fake_movielens

MODEL = "autoint_mlp_sampled"
TWO_STAGE = "autoint_mlp_two_stage"
# Lists of 30 candidates (the 100-movie catalogue's users have ~80 unseen movies), 20 lists a global batch.
LIST_OPTIONS = ("--candidates", "30", "--batch-size", "600")
TWO_STAGE_OPTIONS = (*LIST_OPTIONS, "--validation-split", "0.1", "--candidate-lists")
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def processed_dir(tmp_path_factory):
    # Smaller than the shared fixture's data: two TensorFlow processes share the test machine's cores.
    raw = write_fake_movielens(tmp_path_factory.mktemp("raw") / "ml-1m", n_users=120, n_movies=100, ratings_per_user=20)
    folder = tmp_path_factory.mktemp("processed")
    save_processed(preprocess.preprocess(*raw_files.read_raw(raw)), folder)
    return folder


def start(processed_dir, models_dir, *options, model: str = MODEL) -> subprocess.Popen:
    # One attention layer and no validation pass: less for each worker to trace (the full model and
    # validation are covered in test_streaming); the code path is the same.
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        "--model",
        model,
        "--workers",
        "2",
        "--batch-size",
        "256",
        "--validation-split",
        "0",
        "--att-layer-num",
        "1",
        "--processed-dir",
        str(processed_dir),
        "--models-dir",
        str(models_dir),
        *options,
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def lines_of(stream) -> queue.Queue:
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def test_cluster_is_read_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distributed.current_cluster() is None
    monkeypatch.setenv("TF_CONFIG", distributed.tf_config(["h1:1", "h2:1", "h3:1"], 2))
    assert distributed.current_cluster() == distributed.Cluster(workers=3, index=2, chief=False)
    # A Kubernetes TFJob with a Chief replica: the chief is task 0, workers follow it.
    tfjob = {"cluster": {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tfjob))
    assert distributed.current_cluster() == distributed.Cluster(workers=3, index=1, chief=False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({**tfjob, "task": {"type": "chief", "index": 0}}))
    assert distributed.current_cluster().chief


def test_a_streamed_two_stage_ranker_without_its_lists_is_refused_in_one_line(processed_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "autoint_two_stage",
            "--workers",
            "2",
            "--processed-dir",
            str(processed_dir),
            "--models-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "make candidates" in result.output
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def list_folder(processed_dir, tmp_path_factory):
    """The processed data's out-of-fold candidate lists of TWO_STAGE (with TWO_STAGE_OPTIONS), in shards."""
    data = load_processed(processed_dir)
    cfg = dataclasses.replace(config.model_settings(TWO_STAGE), candidates=30)
    folds = ranker.fold_lists(data.train, data.users, len(data.movies), cfg, chunk_users=16)
    return list_shards.write(
        tmp_path_factory.mktemp("lists") / "candidate_lists", folds, ranker.list_settings(cfg, len(data.movies))
    )


@pytest.mark.slow
def test_two_workers_train_the_two_stage_ranker_from_its_shards_and_the_chief_model_ranks(
    processed_dir, list_folder, tmp_path
):
    run = start(processed_dir, tmp_path, "--epochs", "1", *TWO_STAGE_OPTIONS, str(list_folder), model=TWO_STAGE)
    out, err = run.communicate(timeout=TIMEOUT_S)
    assert run.returncode == 0, err[-3000:]
    assert "worker 0 (chief): pid" in out and "worker 1: pid" in out and "all 2 workers finished" in out
    written = [f"{TWO_STAGE}.keras", f"{TWO_STAGE}.training_log.json"]
    written += [f"{name}.manifest.json" for name in written]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(written)
    log = json.loads((tmp_path / f"{TWO_STAGE}.training_log.json").read_text())
    assert log["input"]["workers"] == 2 and len(log["epochs"]) == 1
    assert np.isfinite(log["epochs"][0]["loss"]) and np.isfinite(log["epochs"][0]["val_loss"])
    data = load_processed(processed_dir)
    cfg = config.train_config(log["config"])
    ranker_model = scorers.TwoStage(
        retrieval=retriever.fit(data.train, len(data.users), len(data.movies)),
        scorer=scorers.ListScorer(KerasRuntime(model_files.load_keras(tmp_path / f"{TWO_STAGE}.keras")), cfg),
        movies=ranker_inputs.movie_table(data.movies),
    )
    lists = candidates.user_lists(ranker_model.retrieval, data.train, data.users, cfg)
    movies, scores = ranker_model.top_n(lists, 10)
    assert movies.shape == (len(lists), 10) and (np.diff(scores, axis=1) <= 0).all()
    assert (np.sort(movies, axis=1)[:, 1:] != np.sort(movies, axis=1)[:, :-1]).all()  # ten different movies


@pytest.mark.slow
def test_a_worker_that_dies_fails_the_run_cleanly_and_no_model_is_written(processed_dir, list_folder, tmp_path):
    # Epochs of one global batch (20 lists) and no validation pass: the first epoch ends as soon as both workers
    # have traced the step, and training is under way when worker 1 is killed.
    options = ("--epochs", "200", "--epoch-lists", "20", *LIST_OPTIONS, "--candidate-lists", str(list_folder))
    run = start(processed_dir, tmp_path, *options, model=TWO_STAGE)
    lines, pids = lines_of(run.stdout), {}
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert run.poll() is None, run.stderr.read()[-3000:]
            continue
        if line.startswith("worker "):
            pids[line.split()[1].rstrip(":")] = int(line.split("pid ")[1].split()[0])
        if line.startswith("epoch 1/200"):  # training is under way on both workers
            break
    else:
        pytest.fail("training did not start")
    os.kill(pids["1"], signal.SIGKILL)
    err = run.communicate(timeout=TIMEOUT_S)[1]
    assert run.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: worker 1 (pid {pids['1']}) was killed by SIGKILL") and "no model" in last
    assert not list(tmp_path.iterdir())
    with pytest.raises(ProcessLookupError):  # the chief was stopped too
        os.kill(pids["0"], 0)
