"""`make bench-train`: training throughput and memory, streamed and in memory, one worker and two.

Writes artifacts/train_bench.json and artifacts/train_bench.png. Two parts, each merged into the JSON
(so a part or a size can be rerun alone):
  * synthetic   one epoch of TRAIN_BENCH["model"], streamed, at each SYNTHETIC size (data/synthetic-<size>/,
                generated and preprocessed first when missing) on 1 and 2 local workers: rows/s and the peak
                RSS of every worker process; then the projection to a cluster, as arithmetic on those figures;
  * ml1m        real MovieLens 1M (data/processed): TRAIN_BENCH["ml1m_model"] trained in memory, streamed,
                and streamed on 2 workers, side by side in one run: rows/s, test AUC and full-catalogue
                Recall@10 (evaluate.evaluate_scorer, the protocol of `make evaluate`); then shorter in-memory
                and streamed runs alternating, for the throughput comparison on a shared machine.
Every run is a child process (`python -m pipeline train ...`), so its peak RSS is its own; the load
average of the machine is written next to every figure (the machine is shared).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import typer

from pipeline import config, config_scale, quiet_imports
from pipeline.bench import plots
from pipeline.data import synth
from pipeline.data.processed import load_processed
from pipeline.evaluation import evaluate
from pipeline.files import write_json
from pipeline.processes import load_average, run_measured
from pipeline.ranking import model_files
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.ranking.scorers import ModelScorer
from pipeline.training import callbacks, streaming, train
from pipeline.training.distributed import launch

BENCH_PATH = config.ARTIFACTS_DIR / "train_bench.json"
PLOT_PATH = config.ARTIFACTS_DIR / "train_bench.png"


def under_load(measure) -> dict:
    """measure()'s figures with the machine's load average before and after (the machine is shared)."""
    before = load_average()
    return {**measure(), "load_average_before": before, "load_average_after": load_average()}


def run_job(*arguments: str) -> tuple[dict, dict]:
    """A job of this module's __main__ in a child process, so that its peak RSS is its own: the job's
    JSON result, and the child's exit code, seconds and peak RSS (processes.run_measured)."""
    with tempfile.TemporaryDirectory(prefix="train-bench-job-") as scratch:
        out = Path(scratch) / "out.json"
        measured = run_measured(["-m", "pipeline.bench.train_bench", *arguments, str(out)])
        if measured["exit_code"]:
            raise RuntimeError(f"the {arguments[0]} run failed with exit code {measured['exit_code']}")
        return json.loads(out.read_text()), measured


def run_training(
    model: str, processed_dir: Path, models_dir: Path, workers: int, streaming: bool, epochs: int | None = None
) -> dict:
    """Train once in a child process (or `workers` children); wall time, peak RSS per process, history."""

    def measure() -> dict:
        if workers > 1:
            options = ["--epochs", str(epochs)] if epochs else []
            result = launch(model, "random", processed_dir, models_dir, workers, options, echo=lambda line: None)
            if result.exit_code:
                raise RuntimeError(result.message)
            return {"peak_rss_gib": [w["peak_rss_gib"] for w in result.workers], "wall_seconds": result.seconds}
        options = ["--model", model, "--processed-dir", str(processed_dir), "--models-dir", str(models_dir)]
        options += [*(["--streaming"] if streaming else []), *(["--epochs", str(epochs)] if epochs else [])]
        result = run_measured(["-m", "pipeline", "train", *options])
        if result["exit_code"]:
            raise RuntimeError(f"training {model} failed with exit code {result['exit_code']}")
        return {"peak_rss_gib": [result["peak_rss_gib"]], "wall_seconds": result["seconds"]}

    run = under_load(measure)
    history = model_files.load_training_log(model, "random", models_dir)
    epoch = (history.get("input") or {}).get("epochs", [{}])[-1]
    return {
        "workers": workers,
        "input": "streaming" if streaming or workers > 1 else "in-memory",
        "epochs": len(history["epochs"]),
        "train_rows_per_epoch": history["train_rows"],
        "train_seconds": history["train_seconds"],
        # Training rows per second over the whole fit (model build, every epoch and its validation).
        "rows_per_s": round(history["train_rows"] * len(history["epochs"]) / history["train_seconds"], 1),
        "last_epoch_rows_per_s": epoch.get("rows_per_s"),
        "wall_seconds": round(run["wall_seconds"], 1),
        "peak_rss_gib": [round(peak, 3) for peak in run["peak_rss_gib"]],
        "load_average_before": run["load_average_before"],
        "load_average_after": run["load_average_after"],
    }


# --- Synthetic sizes -------------------------------------------------------------------------------------


def synthetic_processed(size: str, echo) -> tuple[Path, dict | None]:
    """data/synthetic-<size>/processed, generated and preprocessed when missing (with the preprocess's
    time and peak RSS)."""
    count = synth.parse_count(size)
    root = synth.synthetic_root(count)
    processed = root / "processed"
    if (processed / "encoders.json").is_file() and synth.is_synthetic(processed):
        return processed, None
    echo(f"SYNTHETIC {size}: generating {root}")
    started = time.perf_counter()
    synth.write_synthetic(root, count)
    generated = time.perf_counter() - started
    measured = under_load(lambda: synth.preprocess_synthetic(root, echo))
    return processed, {
        "generate_seconds": round(generated, 1),
        "preprocess_seconds": round(measured["seconds"], 1),
        "preprocess_peak_rss_gib": round(measured["peak_rss_gib"], 3),
        "load_average_before": measured["load_average_before"],
        "load_average_after": measured["load_average_after"],
    }


def stream_input(processed_dir: str, model: str) -> dict:
    """One epoch of `model`'s streamed training rows (ratings and sampled negatives), no model: what the
    input pipeline alone delivers, in this process (the `input` job: measure_stream_input runs it in a child)."""
    cfg = config.MODELS[model]
    started = time.perf_counter()
    plan, _ = streaming.open_plan(Path(processed_dir), "random", cfg)
    index_seconds = time.perf_counter() - started
    rows = sum(len(label) for _, label in streaming.batches(plan, "train", 0, cfg.batch_size))
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds, 1),
        "rated_index_seconds": round(index_seconds, 1),
        "rated_index_mib": round((plan.rated.nbytes if plan.rated is not None else 0) / 2**20, 1),
    }


def measure_stream_input(processed_dir: Path, model: str) -> dict:
    def measure() -> dict:
        measured, child = run_job("input", str(processed_dir), model)
        return {"model": model, **measured, "peak_rss_gib": round(child["peak_rss_gib"], 3)}

    return under_load(measure)


def bench_synthetic(sizes, workers_list, model: str, echo) -> dict:
    results = {}
    for size in sizes:
        processed, preprocess = synthetic_processed(size, echo)
        marker = json.loads((processed / synth.MARKER).read_text().split("```json\n")[1].split("```")[0])
        entry = {"synthetic": True, "data": str(processed), **{k: marker[k] for k in ("ratings", "users", "movies")}}
        entry |= {"model": model, "runs": {}}
        if preprocess:
            entry["preprocess"] = preprocess
        for workers in workers_list:
            with tempfile.TemporaryDirectory(prefix="train-bench-") as models_dir:
                echo(f"SYNTHETIC {size}: one epoch of {model} streamed on {workers} worker(s)")
                run = run_training(model, processed, Path(models_dir), workers, streaming=True, epochs=1)
            echo(
                f"  {run['rows_per_s']:,.0f} rows/s, peak RSS {run['peak_rss_gib']} GiB, "
                f"load {run['load_average_before']}"
            )
            entry["runs"][str(workers)] = run
        entry["input_only"] = measure_stream_input(processed, config_scale.TRAIN_BENCH["pipeline_model"])
        echo(
            f"  input only ({entry['input_only']['model']}): {entry['input_only']['rows_per_s']:,.0f} rows/s, "
            f"peak RSS {entry['input_only']['peak_rss_gib']} GiB"
        )
        results[size] = entry
    return results


def projection(synthetic: dict) -> dict:
    """Cluster throughput as arithmetic on the measured figures, not a measurement."""
    largest = max(synthetic.values(), key=lambda entry: entry["ratings"])
    runs = largest["runs"]
    if "1" not in runs:
        return {}
    one = runs["1"]["rows_per_s"]
    two = runs.get("2", {}).get("rows_per_s")
    rows = largest["runs"]["1"]["train_rows_per_epoch"]
    out = {
        "basis": f"SYNTHETIC {largest['ratings']:,} ratings, one epoch of {largest['model']}",
        "one_worker_rows_per_s": one,
        "epoch_rows": rows,
        "formula": "epoch seconds on N hosts = epoch rows / (N × one-host rows/s × efficiency)",
    }
    if two:
        out["two_workers_one_host_rows_per_s"] = two
        out["loopback_efficiency"] = round(two / (2 * one), 3)
    efficiencies = {"ideal": 1.0, "0.9": 0.9, **({"loopback": out["loopback_efficiency"]} if two else {})}
    out["epoch_minutes"] = {
        f"{hosts} hosts, efficiency {label}": round(rows / (hosts * one * eff) / 60, 1)
        for hosts in (1, 2, 4, 8)
        for label, eff in efficiencies.items()
    }
    return out


# --- Real ML-1M -------------------------------------------------------------------------------------------


RUNS = (("in-memory", 1, False), ("streaming", 1, True), ("streaming-2-workers", 2, True))
THROUGHPUT_EPOCHS = 3


def epoch_seconds(processed_dir: str, model: str, label: str, epochs: str) -> dict:
    """Train `model` for `epochs` in memory or streamed (`label`) in this process and time every epoch
    (the `epochs` job: alternate_throughput runs it in a child).

    Both paths take their per-epoch Keras callback from callbacks.epoch_progress; a timing callback stands in
    for it, so an epoch is timed the same way in both: on_epoch_begin → on_epoch_end (steps and validation).
    """
    tf = quiet_imports.tensorflow()
    seconds = []

    class EpochTimer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.began)

    callbacks.epoch_progress = lambda description, show: EpochTimer()
    cfg = dataclasses.replace(config.MODELS[model], epochs=int(epochs))
    if label == "streaming":
        _, history = streaming.train_streaming(Path(processed_dir), "random", cfg)
    else:
        data = load_processed(Path(processed_dir))
        _, history = train.train_model(data.train, data.encoders.dims(), cfg, catalogue=data.movies)
    rows = int(history["train_rows"] * (1 - cfg.validation_split))  # the rows each epoch trains on
    return {"epoch_seconds": [round(value, 2) for value in seconds], "rows_per_epoch": rows}


def alternate_throughput(model: str, processed_dir: Path, echo, repeats: int) -> dict | None:
    """In-memory and streamed runs of THROUGHPUT_EPOCHS epochs, alternating `repeats` times so that both
    meet the same spells of load from the machine's other users. Throughput is steady-state: training
    rows / the median time of epochs 2.. (the first epoch traces the graph in both paths)."""
    if repeats < 1:
        return None
    speeds = {"in-memory": [], "streaming": []}
    loads = {"in-memory": [], "streaming": []}
    for repeat in range(repeats):
        for label in speeds:
            loads[label].append(load_average())
            timed, _ = run_job("epochs", str(processed_dir), model, label, str(THROUGHPUT_EPOCHS))
            speed = timed["rows_per_epoch"] / statistics.median(timed["epoch_seconds"][1:])
            speeds[label].append(round(speed, 1))
            echo(
                f"  alternating {repeat + 1}/{repeats} {label}: epochs {timed['epoch_seconds']} s, "
                f"{speed:,.0f} rows/s, load {loads[label][-1]}"
            )
    medians = {label: statistics.median(values) for label, values in speeds.items()}
    return {
        "epochs": THROUGHPUT_EPOCHS,
        "steady_rows_per_s": speeds,
        "median_rows_per_s": medians,
        "load_average_before": loads,
        "throughput_loss": round(1 - medians["streaming"] / medians["in-memory"], 3),
    }


def quality_runs(model: str, processed_dir: Path, echo, epochs: int | None) -> dict:
    runs = {}
    with tempfile.TemporaryDirectory(prefix="train-bench-ml1m-") as scratch:
        for label, workers, streaming in RUNS:
            echo(f"ML-1M: {model} {label}")
            models_dir = Path(scratch) / label
            runs[label] = run_training(model, processed_dir, models_dir, workers, streaming, epochs)
            echo(f"  {runs[label]['rows_per_s']:,.0f} rows/s, load {runs[label]['load_average_before']}")
        data = load_processed(processed_dir)
        users = evaluate.test_users(data)
        for label in runs:
            scorer = ModelScorer(
                KerasRuntime(model_files.load_keras(config.model_path(model, "random", Path(scratch) / label)))
            )
            metrics, _, _ = evaluate.evaluate_scorer(scorer, data, users)
            runs[label]["test_auc"] = round(metrics["rated"]["auc"], 4)
            runs[label]["recall@10"] = round(metrics["full_catalog"]["recall@10"], 4)
            echo(f"  {label}: AUC {runs[label]['test_auc']}, Recall@10 {runs[label]['recall@10']}")
    return runs


def bench_ml1m(
    model: str, processed_dir: Path, echo, epochs: int | None = None, repeats: int = 2, previous: dict | None = None
) -> dict:
    """The three ML-1M runs with their test metrics (or `previous` ones of the same model, kept), then the
    alternating throughput runs."""
    if previous and previous.get("model") == model:
        runs = previous["runs"]
    else:
        runs = quality_runs(model, processed_dir, echo, epochs)
    memory, streamed, two = runs["in-memory"], runs["streaming"], runs["streaming-2-workers"]
    gap = {
        "auc": round(abs(two["test_auc"] - streamed["test_auc"]), 4),
        "recall@10": round(abs(two["recall@10"] - streamed["recall@10"]), 4),
    }
    alternating = alternate_throughput(model, processed_dir, echo, repeats)
    whole_runs = round(1 - streamed["rows_per_s"] / memory["rows_per_s"], 3)
    loss = alternating["throughput_loss"] if alternating else whole_runs
    return {
        "synthetic": False,
        "data": str(processed_dir),
        "model": model,
        "runs": runs,
        "throughput_side_by_side": alternating,
        "streaming_vs_in_memory": {
            "throughput_loss": loss,
            "throughput_loss_whole_runs": whole_runs,
            "auc_difference": round(streamed["test_auc"] - memory["test_auc"], 4),
            "recall@10_difference": round(streamed["recall@10"] - memory["recall@10"], 4),
        },
        "two_vs_one_worker_gap": gap,
        "targets": {
            "workers_quality_gap": met("workers_quality_gap", max(gap.values())),
            "streaming_throughput_loss": met("streaming_throughput_loss", loss),
        },
    }


def met(target: str, value: float) -> dict:
    return {
        "target": config_scale.SCALE_TARGETS[target],
        "value": value,
        "met": value <= config_scale.SCALE_TARGETS[target],
    }


# --- The artifacts -----------------------------------------------------------------------------------------


def peak_target(synthetic: dict) -> dict | None:
    largest = [entry for entry in synthetic.values() if entry["ratings"] >= 25_000_000]
    if not largest:
        return None
    peak = max(max(run["peak_rss_gib"]) for run in largest[0]["runs"].values())
    return {
        "target_gib": config_scale.SCALE_TARGETS["peak_rss_gib_at_25m"],
        "peak_gib": peak,
        "met": peak <= config_scale.SCALE_TARGETS["peak_rss_gib_at_25m"],
    }


def bench_train_command(
    sizes: str = typer.Option(
        ",".join(config_scale.TRAIN_BENCH["sizes"]), help="SYNTHETIC sizes, e.g. 1M,5M,25M; '' for none."
    ),
    workers: str = typer.Option(
        ",".join(map(str, config_scale.TRAIN_BENCH["workers"])), help="Worker counts, e.g. 1,2."
    ),
    model: config.Model = typer.Option(config_scale.TRAIN_BENCH["model"], help="The model of the synthetic runs."),
    ml1m: bool = typer.Option(True, "--ml1m/--no-ml1m", help="Also the real ML-1M side-by-side runs."),
    ml1m_epochs: int = typer.Option(None, min=1, help="Epochs of the ML-1M runs (default: the model's)."),
    repeats: int = typer.Option(2, min=0, help="Alternating in-memory / streamed ML-1M throughput runs."),
    quality: bool = typer.Option(
        True, "--quality/--keep-quality", help="Rerun the three ML-1M quality runs, or keep those in train_bench.json."
    ),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR, help="Real ML-1M's processed data."),
) -> None:
    """Measure training throughput and memory (SYNTHETIC sizes, 1 vs 2 workers; ML-1M side by side)."""
    bench = json.loads(BENCH_PATH.read_text()) if BENCH_PATH.is_file() else {}
    bench["note"] = (
        "'synthetic' figures come from SYNTHETIC data (pipeline/data/synth.py), for throughput and "
        "memory only; 'ml1m' is the real MovieLens 1M. Machine: "
        f"{os.cpu_count()} cores, shared; load average next to every figure."
    )
    size_list = [size for size in sizes.split(",") if size.strip()]
    worker_list = [int(w) for w in workers.split(",") if w.strip()]
    if size_list:
        bench.setdefault("synthetic", {})
        for size, entry in bench_synthetic(size_list, worker_list, model.value, typer.echo).items():
            old = bench["synthetic"].get(size, {})
            if old.get("model") == entry["model"]:
                entry["runs"] = {**old.get("runs", {}), **entry["runs"]}
            entry.setdefault("preprocess", old.get("preprocess"))
            bench["synthetic"][size] = entry
        bench["projection"] = projection(bench["synthetic"])
        bench["peak_rss_target"] = peak_target(bench["synthetic"])
        write_json(BENCH_PATH, bench)
    if ml1m:
        if not (processed_dir / "encoders.json").is_file():
            typer.echo(f"error: {processed_dir}/encoders.json not found; run `make preprocess` first", err=True)
            raise typer.Exit(2)
        bench["ml1m"] = bench_ml1m(
            config_scale.TRAIN_BENCH["ml1m_model"],
            processed_dir,
            typer.echo,
            ml1m_epochs,
            repeats,
            None if quality else bench.get("ml1m"),
        )
    write_json(BENCH_PATH, bench)
    plots.training_at_scale(bench, PLOT_PATH)
    typer.echo(f"wrote {BENCH_PATH} and {PLOT_PATH}")


JOBS = {"input": stream_input, "epochs": epoch_seconds}

if __name__ == "__main__":
    # Child runs (run_job): `python -m pipeline.bench.train_bench input <processed dir> <model> <out.json>` (the
    # input alone) and `... epochs <processed dir> <model> in-memory|streaming <epochs> <out.json>` (epoch times).
    job, *arguments, out = sys.argv[1:]
    write_json(Path(out), JOBS[job](*arguments))
