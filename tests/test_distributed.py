"""`train --workers 2` on loopback: MultiWorkerMirroredStrategy across two real worker processes."""

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

from pipeline.cli import app
from pipeline.data import preprocess
from pipeline.ranking import model_files
from pipeline.ranking.scorers import ModelScorer, score_rows
from pipeline.training import distributed
from tests.fake_movielens import write_fake_movielens

MODEL = "autoint_mlp_sampled"
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def processed_dir(tmp_path_factory):
    # Smaller than the shared fixture's data: two TensorFlow processes share the test machine's cores.
    raw = write_fake_movielens(tmp_path_factory.mktemp("raw") / "ml-1m", n_users=120, n_movies=100, ratings_per_user=20)
    folder = tmp_path_factory.mktemp("processed")
    preprocess.save_processed(preprocess.preprocess(*preprocess.read_raw(raw)), folder)
    return folder


def start(processed_dir, models_dir, *options) -> subprocess.Popen:
    # One attention layer and no validation pass: less for each worker to trace (the full model and
    # validation are covered in test_streaming); the code path is the same.
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        "--model",
        MODEL,
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


def test_models_that_cannot_stream_are_refused_in_one_line(processed_dir, tmp_path):
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
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "two-stage" in result.output
    assert not list(tmp_path.iterdir())


def test_two_workers_train_and_the_chief_writes_a_model_that_loads_and_scores(processed_dir, tmp_path):
    run = start(processed_dir, tmp_path, "--epochs", "1")
    out, err = run.communicate(timeout=TIMEOUT_S)
    assert run.returncode == 0, err[-3000:]
    assert "worker 0 (chief): pid" in out and "worker 1: pid" in out and "all 2 workers finished" in out
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{MODEL}.keras", f"{MODEL}.training_log.json"]
    history = json.loads((tmp_path / f"{MODEL}.training_log.json").read_text())
    assert history["input"]["workers"] == 2 and history["config"]["batch_size"] == 256
    assert len(history["epochs"]) == 1 and np.isfinite(history["epochs"][0]["loss"])
    data = preprocess.load_processed(processed_dir)
    scores = score_rows(ModelScorer(model_files.load_keras(tmp_path / f"{MODEL}.keras")), data.test)
    assert scores.shape == (len(data.test),) and ((scores > 0) & (scores < 1)).all()


def test_a_worker_that_dies_fails_the_run_cleanly_and_no_model_is_written(processed_dir, tmp_path):
    run = start(processed_dir, tmp_path, "--epochs", "200")
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
