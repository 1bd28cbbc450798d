"""`make bench`: how fast and how big recommending is, on the models of `make all`, through both runtimes side
by side in one run (the models' LiteRT files, which the serving paths run, and their .keras files).

Prints a table and writes artifacts/bench.json; per runtime:
  scored request    warm, median of --repeats: user 3's Top-10 scored now in another month (retrieval +
                    ranking) and a new person's from three liked movies; wall and CPU milliseconds
  precomputed       user 3's default Top-10 from the precomputed table
  every user        every user's Top-10 (`recommend_all`)
  reference mode    the reference AutoInt+MLP ranking one user's whole catalogue
  cold start        wall time and peak RSS of `python -m pipeline recommend --liked ...` and `--user 3 --month 1`
                    in new processes (median and largest of --cold-runs)
and Keras ÷ LiteRT ratios. The targets are config_evaluation.GOALS. The load average is recorded too: on a small shared
machine, other work moves every figure (the ratios much less: both runtimes run one after the other).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import typer

from pipeline import config, config_evaluation, config_serving
from pipeline.files import write_json
from pipeline.ranking.model_files import load_training_log
from pipeline.serving.errors import RecommendError, parse_user
from pipeline.serving.recommender import Recommender
from pipeline.serving.terminal import fail, parse_liked

REPO = config.REPO_DIR


def seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def plain_predict(model, batch_size: int = 65_536):
    """`Model.predict` as a score function: the reference whose ranking the fast path must match."""
    return lambda inputs: model.predict(
        {field: np.asarray(inputs[field]) for field in config.FIELDS}, batch_size=batch_size, verbose=0
    )[:, 0]


def cold_start(arguments: list[str], processed_dir: Path, models_dir: Path, runtime: str, runs: int) -> dict:
    """Median wall seconds and the largest peak RSS (MiB) of `python -m pipeline recommend <arguments>` in new
    processes, and whether TensorFlow was imported."""
    command = [sys.executable, "-m", "pipeline", "recommend", *arguments, "--runtime", runtime]
    command += ["--processed-dir", str(processed_dir), "--models-dir", str(models_dir)]
    # A child forked from this (large) process starts with this process's pages counted in its peak RSS, so
    # the command runs under a small Python launcher that reports its own child's peak (KiB on Linux).
    launcher = [
        sys.executable,
        "-c",
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)",
    ]
    walls, peaks = [], []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(launcher + command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RecommendError(f"`{' '.join(command[2:])}` failed: {done.stderr.strip()}")
        walls.append(time.perf_counter() - started)
        peaks.append(int(done.stdout.split()[-1]) / 2**10)
    return (
        {
            "command": "python " + " ".join(command[1 : 5 + len(arguments)]),
            "s": round(statistics.median(walls), 2),
            "peak_rss_mib": round(max(peaks)),
        }
        if runs
        else {}
    )


def warm_ms(call, repeats: int) -> dict:
    """Median wall and mean CPU milliseconds of `call` over `repeats` runs, after one uncounted run."""
    call()
    walls, cpu = [], time.process_time()
    for _ in range(repeats):
        walls.append(seconds(call))
    return {
        "wall_ms": round(1000 * statistics.median(walls), 2),
        "cpu_ms": round(1000 * (time.process_time() - cpu) / repeats, 2),
    }


def reference_one_user(rec, user_id: int, repeats: int) -> dict:
    """The reference AutoInt+MLP ranking one user's whole catalogue (reference mode), warm."""
    name = config.model_name(config.DEFAULT_ARCHITECTURE, "reference")
    return warm_ms(partial(rec.top_for_user, name, user_id), repeats)


def runtime_figures(
    runtime: str, processed_dir: Path, models_dir: Path, user_id: int, liked: list[int], repeats: int, cold_runs: int
) -> dict:
    """Every figure of one runtime, and the Top-10s it gave (to compare the runtimes)."""
    name = config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)
    rec = Recommender.load(processed_dir, models_dir, models=[name], runtime=runtime)
    scored = partial(rec.top_for_user, name, user_id, month=1)
    person = partial(rec.top_for_liked, name, liked)
    figures = {
        "scored_user_month": warm_ms(scored, repeats),
        "scored_new_person": warm_ms(person, repeats),
        "precomputed_user": warm_ms(partial(rec.top_for_user, name, user_id), repeats),
        "reference_mode_one_user": reference_one_user(rec, user_id, repeats),
    }
    everyone = seconds(lambda: rec.recommend_all(progress=True))
    figures["every_user_s"] = round(everyone, 1)
    liked_text = ",".join(map(str, liked))
    figures["cold_liked"] = cold_start(["--liked", liked_text], processed_dir, models_dir, runtime, cold_runs)
    month = ["--user", str(user_id), "--month", "1"]
    figures["cold_user_month"] = cold_start(month, processed_dir, models_dir, runtime, cold_runs)
    tops = {"user": scored()["movie_id"].tolist(), "person": person()["movie_id"].tolist()}
    return figures, tops


def run_bench(
    processed_dir: Path, models_dir: Path, user_id: int, liked: list[int], repeats: int, cold_runs: int
) -> dict:
    results = {
        "model": config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE),
        "user": user_id,
        "liked": liked,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "targets": config_evaluation.GOALS,
        "runtimes": {},
    }
    tops = {}
    for runtime in (runtime.value for runtime in config.Runtime):
        results["runtimes"][runtime], tops[runtime] = runtime_figures(
            runtime, processed_dir, models_dir, user_id, liked, repeats, cold_runs
        )
    results["same_top10"] = tops["litert"] == tops["keras"]
    results["keras_over_litert"] = ratios(results["runtimes"]["keras"], results["runtimes"]["litert"])
    results["ranker_train_s"] = {
        ranker: load_training_log(ranker, "random", models_dir)["train_seconds"]
        for ranker in config.TWO_STAGE_MODELS
        if config.model_path(ranker, "random", models_dir).is_file()
    }
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def ratios(slow: dict, fast: dict) -> dict:
    """slow ÷ fast of every number the two figures dicts share (nested one level)."""
    out = {}
    for key, value in slow.items():
        if isinstance(value, dict):
            out[key] = {
                k: round(v / fast[key][k], 2) for k, v in value.items() if isinstance(v, int | float) and fast[key][k]
            }
        elif isinstance(value, int | float) and fast[key]:
            out[key] = round(value / fast[key], 2)
    return out


def table(results: dict) -> str:
    goals, keras, lite, ratio = (
        results["targets"],
        results["runtimes"]["keras"],
        results["runtimes"]["litert"],
        results["keras_over_litert"],
    )
    user = results["user"]

    def row(label, key, unit, target="", field=None):
        if field is None:
            return (label, f"{keras[key]} {unit}", f"{lite[key]} {unit}", f"{ratio[key]}×", target)
        return (label, f"{keras[key][field]} {unit}", f"{lite[key][field]} {unit}", f"{ratio[key][field]}×", target)

    rows = [
        ("", "Keras", "LiteRT", "Keras ÷ LiteRT", "target (LiteRT)"),
        row(
            f"user {user}'s Top-10 scored in month 1, CPU",
            "scored_user_month",
            "ms",
            f"≤ {goals['scored_cpu_ms']} ms",
            "cpu_ms",
        ),
        row("  wall", "scored_user_month", "ms", "", "wall_ms"),
        row(
            "a new person's Top-10 (3 liked), CPU",
            "scored_new_person",
            "ms",
            f"≤ {goals['scored_cpu_ms']} ms",
            "cpu_ms",
        ),
        row("  wall", "scored_new_person", "ms", "", "wall_ms"),
        row(f"user {user}'s Top-10 from the precomputed table", "precomputed_user", "ms", "", "wall_ms"),
        row("reference mode: one user's whole catalogue", "reference_mode_one_user", "ms", "", "wall_ms"),
        row("every user's Top-10", "every_user_s", "s", f"≤ {goals['all_users_s']} s"),
        row("cold `recommend --liked ...`", "cold_liked", "s", f"≤ {goals['cold_recommend_s']} s", "s"),
        row("  its peak RSS", "cold_liked", "MiB", f"≤ {goals['cold_recommend_peak_rss_mib']} MiB", "peak_rss_mib"),
        row(
            f"cold `recommend --user {user} --month 1`", "cold_user_month", "s", f"≤ {goals['cold_recommend_s']} s", "s"
        ),
        row(
            "  its peak RSS", "cold_user_month", "MiB", f"≤ {goals['cold_recommend_peak_rss_mib']} MiB", "peak_rss_mib"
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(
        f"model {results['model']}; the same Top-10 through both runtimes: {results['same_top10']}; "
        f"{results['cpus']} CPUs, load average {results['load_average_before'][0]} before, "
        f"{results['load_average_after'][0]} after"
    )
    return "\n".join(lines)


def bench_command(
    user: str = typer.Option("3", "--user", help="The user of the one-user and cold-start figures."),
    repeats: int = typer.Option(config_serving.BENCH["repeats"], min=1, help="Runs of the warm figures (median kept)."),
    cold_runs: int = typer.Option(config_serving.BENCH["cold_runs"], min=1, help="Cold `recommend` processes timed."),
    liked: str = typer.Option(
        ",".join(map(str, config_serving.BENCH["liked"])), help="The new person's liked movies (MovieLens IDs)."
    ),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "bench.json"),
) -> None:
    """Time recommending through LiteRT and Keras side by side: warm, every user, cold (and its memory)."""
    try:
        user_id = parse_user(user)
        results = run_bench(processed_dir, models_dir, user_id, parse_liked(liked), repeats, cold_runs)
    except RecommendError as error:
        fail(error)
    write_json(out, results)
    typer.echo(table(results))
    typer.echo(f"wrote {out}")
