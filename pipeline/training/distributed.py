"""Multi-worker training with tf.distribute.MultiWorkerMirroredStrategy: `train --workers N`.

Three ways in, one entry point (`python -m pipeline train --model X --workers N`):
  * on one machine (no TF_CONFIG): `launch` starts N worker processes of that same command, each with a
    TF_CONFIG naming N loopback ports, watches them, and fails the run when any of them dies;
  * on a cluster, the cluster (a Kubernetes TFJob, Ray Train, or a person on each host) sets TF_CONFIG and
    runs the command on every host: `run_worker` joins the cluster and trains;
  * --streaming without --workers: the streamed rows on one process, no strategy.
Every worker streams its own shard of the rows (pipeline/training/streaming.py, stream_plan.py) with batches of
batch_size / N rows, so the global batch and the learning rate are the model's settings. Only the
chief (task 0) writes the model, atomically (model_files.save_model); the others save to a scratch folder
that is deleted, as tf.distribute asks of every worker.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from pipeline import config, config_scale, quiet_imports
from pipeline.config import TrainConfig
from pipeline.processes import describe_exit, free_ports, wait_measured
from pipeline.ranking import model_files
from pipeline.training import list_streaming, stream_plan, streaming, training_log

THREADS_ENV = "PIPELINE_WORKER_THREADS"  # intra-op threads of a locally launched worker


@dataclass(frozen=True)
class Cluster:
    workers: int
    index: int  # this task's position among the workers (chief first)
    chief: bool


def current_cluster() -> Cluster | None:
    """This process's place in the cluster TF_CONFIG describes, or None without one.

    A TFJob or a hand-written TF_CONFIG may name a "chief" task beside the "worker"s; without one,
    worker 0 is the chief (as MultiWorkerMirroredStrategy has it).
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    spec = json.loads(text)
    cluster, task = spec.get("cluster", {}), spec.get("task", {})
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    position = index if kind == "chief" else chiefs + index
    return Cluster(workers=chiefs + workers, index=position, chief=position == 0)


def tf_config(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


# --- The local launcher ----------------------------------------------------------------------------------


@dataclass
class Launch:
    exit_code: int
    seconds: float
    workers: list[dict]  # per worker: pid, exit_code, peak_rss_gib
    message: str = ""


def worker_arguments(
    name: str, split: str, processed_dir: Path, models_dir: Path, workers: int, options: list[str]
) -> list[str]:
    """The `train` command every worker runs: the launcher's own, whose `options` (its --settings file and
    training options) give each worker the same settings."""
    return [
        "-m",
        "pipeline",
        "train",
        "--model",
        name,
        "--split",
        split,
        "--processed-dir",
        str(processed_dir),
        "--models-dir",
        str(models_dir),
        "--workers",
        str(workers),
        *options,
    ]


def launch(
    name: str, split: str, processed_dir: Path, models_dir: Path, workers: int, options: list[str], echo=print
) -> Launch:
    """Train model `name` on `workers` local processes joined by MultiWorkerMirroredStrategy on loopback.

    The run succeeds when every worker exits 0. When one dies (an error, a kill, the OOM killer) the
    others are stopped, any temporary model file the chief had begun is removed, and the result carries
    a one-line message; the model file is only ever written whole, by the chief, at the very end.
    """
    host = config_scale.WORKERS["host"]
    addresses = [f"{host}:{port}" for port in free_ports(workers, host)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    started = time.perf_counter()
    arguments = worker_arguments(name, split, processed_dir, models_dir, workers, options)
    processes = []
    try:
        for index in range(workers):
            env = {
                **os.environ,
                "TF_CONFIG": tf_config(addresses, index),
                THREADS_ENV: str(threads),
                "PYTHONUNBUFFERED": "1",
            }
            processes.append(subprocess.Popen([sys.executable, *arguments], env=env))
            echo(f"worker {index}{' (chief)' if index == 0 else ''}: pid {processes[-1].pid} on {addresses[index]}")
        return _watch(processes, name, split, models_dir, started)
    finally:
        _stop([process for process in processes if process.returncode is None])


def _watch(processes: list[subprocess.Popen], name: str, split: str, models_dir: Path, started: float) -> Launch:
    results: dict[int, dict] = {}
    while len(results) < len(processes):
        for index, process in enumerate(processes):
            if index in results:
                continue
            result = wait_measured(process, block=False)
            if result is None:
                continue
            results[index] = result
            if result["exit_code"] != 0:
                _stop([p for i, p in enumerate(processes) if i not in results])
                for i, p in enumerate(processes):
                    results.setdefault(i, {"pid": p.pid, "exit_code": p.returncode, "peak_rss_gib": float("nan")})
                _remove_partial_files(config.model_path(name, split, models_dir), [p.pid for p in processes])
                message = (
                    f"error: worker {index} (pid {process.pid}) {describe_exit(result['exit_code'])}; "
                    f"stopped the other workers; the run failed and wrote no model"
                )
                return Launch(1, time.perf_counter() - started, [results[i] for i in range(len(processes))], message)
        time.sleep(config_scale.WORKERS["poll_seconds"])
    return Launch(0, time.perf_counter() - started, [results[i] for i in range(len(processes))])


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL after the grace period; reaps them all."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + config_scale.WORKERS["grace_seconds"]
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _remove_partial_files(model: Path, pids: list[int]) -> None:
    """A worker killed inside files.atomic_path leaves its .tmp-<pid>-<name> behind; remove those."""
    for pid in pids:
        for leftover in model.parent.glob(f".tmp-{pid}-*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


# --- A worker ----------------------------------------------------------------------------------------------


def run_worker(
    name: str,
    cfg: TrainConfig,
    split: str,
    processed_dir: Path,
    models_dir: Path,
    cluster: Cluster | None,
    echo=print,
    candidate_lists: Path | None = None,
) -> dict:
    """Train on this process: as one worker of `cluster` (MultiWorkerMirroredStrategy), or alone when
    cluster is None; a two-stage ranker from the list shards in `candidate_lists`. The chief (or the lone
    process) saves the model; returns the history."""
    tf = quiet_imports.tensorflow()
    if os.environ.get(THREADS_ENV):
        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ[THREADS_ENV]))
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if cluster else None
    chief = cluster is None or cluster.chief
    workers, chief_echo = (cluster.workers if cluster else 1), (echo if chief else None)
    if cfg.candidates:
        model, history = list_streaming.train_streamed_ranker(
            candidate_lists, processed_dir, cfg, strategy, workers, echo=chief_echo
        )
    else:
        model, history = streaming.train_streaming(processed_dir, split, cfg, strategy, workers, echo=chief_echo)
    history["split"] = split
    # This process's own peak so far (a worker's, with the model and its input pipeline): what a host needs.
    history.setdefault("input", {})["peak_rss_gib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3
    )
    if chief:
        model_files.save_model(model, history, name, split, models_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="pipeline-worker-") as scratch:
            model_files.save_keras(model, Path(scratch) / f"{name}.keras")
    return history


def train_command(
    name: str,
    cfg: TrainConfig,
    split: str,
    processed_dir: Path,
    models_dir: Path,
    workers: int | None,
    options: list[str],
    echo,
    error,
    candidate_lists: Path | None = None,
) -> int:
    """What `train --workers N` / `train --streaming` does; returns the exit code. `options` are the command
    line's settings file, candidate lists and training options, which the launcher passes on to the workers
    it starts."""
    cluster = current_cluster() if workers else None
    try:
        if cfg.candidates:
            catalogue = Path(processed_dir) / "movies.parquet"
            if not catalogue.is_file():
                raise FileNotFoundError(f"{catalogue} not found; run `make preprocess` first")
            list_streaming.check_lists(candidate_lists, cfg, pq.ParquetFile(catalogue).metadata.num_rows)
        else:
            stream_plan.check_supported(cfg)
        if cluster and cluster.workers != workers:
            raise ValueError(f"--workers {workers}, but TF_CONFIG names {cluster.workers} workers")
        if not (processed_dir / "encoders.json").is_file():
            raise FileNotFoundError(f"{processed_dir}/encoders.json not found; run `make preprocess` first")
    except (ValueError, FileNotFoundError) as problem:
        error(f"error: {problem}")
        return 2
    if workers and workers > 1 and cluster is None:
        echo(f"training {name} on {workers} local workers (MultiWorkerMirroredStrategy, streamed input)")
        result = launch(name, split, processed_dir, models_dir, workers, options, echo)
        if result.exit_code:
            error(result.message)
            return result.exit_code
        echo(f"all {workers} workers finished in {result.seconds:.0f} s")
        return 0
    where = f"worker {cluster.index} of {cluster.workers}" if cluster else "one process"
    if cluster is None or cluster.chief:
        echo(f"training {name} on the {split} split, streamed from {processed_dir} ({where})")
    history = run_worker(name, cfg, split, processed_dir, models_dir, cluster, echo, candidate_lists)
    if cluster and not cluster.chief:
        return 0
    echo(training_log.epoch_table(history))
    echo(f"{name}: trained in {history['train_seconds']} s; saved {config.model_path(name, split, models_dir)}")
    return 0
