"""`make bench-scale`: the product path's stages at 1 M, 5 M and 25 M SYNTHETIC ratings, each timed and its peak
RSS measured in its own process → artifacts/scale_bench.json and artifacts/scale_bench.png.

For each size the stages run as `make all DATA=synthetic-<size>` runs them, into the same folders
(data/synthetic-<size>/, artifacts/synthetic-<size>/): generate, preprocess, retrieval fit, candidate lists, one
ranker epoch (streamed, on one worker: the product model; cut to SCALE["epoch_lists"] lists), the same epoch
on two local workers (into a scratch folder, for rows/s; at SCALE["two_worker_sizes"]), the LiteRT export,
evaluate, precompute.
Every stage is a child process (`python -m pipeline <stage> ...`), so the peak RSS is the stage's own
(os.wait4), not the bench's; a worker's peak RSS is the one its training log records. The load average is
written next to every figure: the machine is shared. Sizes are merged into the JSON, so one size can be
rerun alone (`--sizes 25M`).

The projection to N hosts is arithmetic on the measured rows/s (`projection`), not a measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import typer

from pipeline import config, config_scale
from pipeline.bench import plots
from pipeline.data import synth
from pipeline.files import write_json
from pipeline.processes import load_average, run_measured

BENCH_PATH = config.ARTIFACTS_DIR / "scale_bench.json"
PLOT_PATH = config.ARTIFACTS_DIR / "scale_bench.png"
STAGES = ("generate", "preprocess", "retrieval", "candidates", "ranker epoch", "export", "evaluate", "precompute")


def folders(size: str) -> dict[str, Path]:
    """Where `make all DATA=synthetic-<size>` keeps a size's data and artifacts."""
    root = synth.synthetic_root(synth.parse_count(size))
    out = config.ARTIFACTS_DIR / root.name
    return {"root": root, "raw": root / config_scale.SYNTH["raw_folder"], "processed": root / "processed", "out": out}


def stage_commands(size: str, workers: int = 1, models_dir: Path | None = None) -> dict[str, list[str]]:
    """Each stage's command line (arguments of `python`), as the Makefile's synthetic rules have them."""
    where = folders(size)
    processed, models = str(where["processed"]), str(models_dir or where["out"] / "models")
    data = ["--processed-dir", processed, "--models-dir", models]
    model = config.model_name(config.DEFAULT_ARCHITECTURE)
    train = ["-m", "pipeline", "train", "--model", model, "--streaming", "--epochs", "1"]
    train += ["--epoch-lists", str(config_scale.SCALE["epoch_lists"]), "--candidate-lists", f"{models}/candidate_lists"]
    return {
        "generate": ["-m", "pipeline", "synth", "--ratings", size, "--no-preprocess"],
        "preprocess": ["-m", "pipeline", "preprocess", "--raw-dir", str(where["raw"]), "--out-dir", processed],
        "retrieval": ["-m", "pipeline", "retrieval", *data],
        "candidates": ["-m", "pipeline", "candidates", *data],
        "ranker epoch": [*train, *data, *(["--workers", str(workers)] if workers > 1 else [])],
        "export": ["-m", "pipeline", "export", "--model", model, "--models-dir", models],
        "evaluate": ["-m", "pipeline", "evaluate", "--model", model, *data, "--out-dir", str(where["out"])],
        "precompute": ["-m", "pipeline", "precompute", "--model", model, *data],
    }


def measured(arguments: list[str], echo) -> dict:
    """One stage in a child process: seconds, peak RSS, load average before and after; RuntimeError if it fails."""
    echo(f"$ python {' '.join(arguments)}")
    before = load_average()
    result = run_measured(arguments)
    if result["exit_code"]:
        raise RuntimeError(f"`python {' '.join(arguments)}` failed with exit code {result['exit_code']}")
    return {
        "seconds": round(result["seconds"], 1),
        "peak_rss_gib": round(result["peak_rss_gib"], 3),
        "load_average_before": before,
        "load_average_after": load_average(),
    }


def epoch_figures(models_dir: Path) -> dict:
    """Rows/s, rows and the training process's peak RSS from the default model's training log in models_dir."""
    log = json.loads((models_dir / f"{config.model_name(config.DEFAULT_ARCHITECTURE)}.training_log.json").read_text())
    epoch = log["input"]["epochs"][0]
    return {
        "epoch_lists": log["input"]["epoch_lists"],
        "full_epoch_lists": log["input"]["source_lists"],
        "rows": epoch["train_rows"],
        "rows_per_s": epoch["rows_per_s"],
        "epoch_seconds": epoch["seconds"],
        "worker_peak_rss_gib": log["input"].get("peak_rss_gib"),
    }


def bench_size(size: str, echo, regenerate: bool, save=lambda entry: None) -> dict:
    """Every stage of one size, in order (generation skipped when the data exists and not `regenerate`);
    save(entry) after each stage, so that a run stopped part-way keeps what it measured."""
    where, commands = folders(size), stage_commands(size)
    entry: dict = {"ratings": synth.parse_count(size), "shape": synth.shape(synth.parse_count(size)), "stages": {}}
    for stage in STAGES:
        if stage == "generate" and (where["raw"] / "ratings.dat").is_file() and not regenerate:
            entry["stages"][stage] = {"skipped": "the data existed; --regenerate times it"}
            continue
        if stage == "preprocess":
            where["processed"].mkdir(parents=True, exist_ok=True)
            (where["processed"] / synth.MARKER).write_text((where["root"] / synth.MARKER).read_text())
        entry["stages"][stage] = measured(commands[stage], echo)
        save(entry)
        echo(f"{size} {stage}: {entry['stages'][stage]}")
        if stage == "ranker epoch":
            entry["stages"][stage] |= epoch_figures(where["out"] / "models")
            if size not in config_scale.SCALE["two_worker_sizes"]:
                continue
            scratch = where["out"] / "bench-two-workers"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            (scratch / "candidate_lists").symlink_to((where["out"] / "models" / "candidate_lists").resolve())
            two = stage_commands(size, workers=2, models_dir=scratch)["ranker epoch"]
            entry["stages"]["ranker epoch, 2 workers"] = measured(two, echo) | epoch_figures(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
            save(entry)
    return entry


def projection(entry: dict, sizes: dict) -> dict:
    """A full epoch's time on N hosts as arithmetic on measured figures, not a claim: the largest size's one-worker
    rows/s, scaled by the two-worker efficiency of the largest size where both were measured."""
    one = entry["stages"].get("ranker epoch", {})
    paired = [e for e in sizes.values() if "rows_per_s" in e["stages"].get("ranker epoch, 2 workers", {})]
    both = max(paired, key=lambda e: e["ratings"]) if paired else entry
    two = both["stages"].get("ranker epoch, 2 workers", {})
    if "rows_per_s" not in one:
        return {}
    rows = one["full_epoch_lists"] * config.model_settings(config.model_name(config.DEFAULT_ARCHITECTURE)).candidates
    out = {
        "basis": f"SYNTHETIC {entry['ratings']:,} ratings: one epoch = {rows:,} candidate rows",
        "one_host_rows_per_s": one["rows_per_s"],
        "formula": "epoch seconds on N hosts = epoch rows / (N × one-host rows/s × efficiency)",
        "full_epoch_minutes_one_host": round(rows / one["rows_per_s"] / 60, 1),
    }
    efficiencies = {"ideal": 1.0, "0.9": 0.9}
    if "rows_per_s" in two:
        # Two workers on one 2-core host share its cores: their rows/s over one worker's is what the
        # collectives and the split cost, the closest this machine comes to a per-host efficiency.
        ratio = two["rows_per_s"] / both["stages"]["ranker epoch"]["rows_per_s"]
        out["two_workers_measured_at"] = f"SYNTHETIC {both['ratings']:,} ratings"
        out["one_host_two_workers_over_one"] = round(ratio, 3)
        efficiencies["measured"] = min(1.0, out["one_host_two_workers_over_one"])
    out["full_epoch_minutes"] = {
        f"{hosts} hosts, efficiency {label}": round(rows / (hosts * one["rows_per_s"] * eff) / 60, 1)
        for hosts in (1, 2, 4, 8, 16)
        for label, eff in efficiencies.items()
    }
    return out


def summarize(bench: dict) -> None:
    """The projection and each size's largest peak RSS, from the stages measured so far."""
    trained = [e for e in bench["sizes"].values() if "rows_per_s" in e["stages"].get("ranker epoch", {})]
    bench["projection"] = projection(max(trained, key=lambda e: e["ratings"]), bench["sizes"]) if trained else {}
    bench["peak_rss_gib_by_size"] = {
        name: max([f.get("worker_peak_rss_gib") or f.get("peak_rss_gib", 0) for f in entry["stages"].values()] or [0])
        for name, entry in bench["sizes"].items()
    }


def bench_scale_command(
    sizes: str = typer.Option(",".join(config_scale.SCALE["sizes"]), help="SYNTHETIC sizes, e.g. 1M,5M,25M."),
    regenerate: bool = typer.Option(False, "--regenerate/--reuse", help="Generate the data again, timing it."),
) -> None:
    """Time every product stage and measure its peak RSS at SYNTHETIC sizes → artifacts/scale_bench.json, .png."""
    bench = json.loads(BENCH_PATH.read_text()) if BENCH_PATH.is_file() else {}
    bench["note"] = (
        "SYNTHETIC data (pipeline/data/synth.py): for time and memory only, never for quality claims. "
        f"Machine: {os.cpu_count()} cores, shared; load average next to every figure. Each ranker epoch is cut "
        f"to {config_scale.SCALE['epoch_lists']:,} lists (full_epoch_lists says how many an epoch has)."
    )
    bench.setdefault("sizes", {})
    for size in [size.strip() for size in sizes.split(",") if size.strip()]:
        try:
            synth.parse_count(size)
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
        started = time.perf_counter()

        def save(entry, size=size, started=started):
            bench["sizes"][size] = {**entry, "bench_seconds": round(time.perf_counter() - started, 1)}
            summarize(bench)
            write_json(BENCH_PATH, bench)

        try:
            save(bench_size(size, typer.echo, regenerate, save))
        except RuntimeError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        plots.stages_at_scale(bench, STAGES, PLOT_PATH)
    typer.echo(f"wrote {BENCH_PATH} and {PLOT_PATH}")
