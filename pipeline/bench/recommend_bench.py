"""`make bench`: how fast and how big recommending is, on the models of `make all`.

Prints a table and writes artifacts/bench.json:
  one user          one user's Top-10 through `recommend`, warm, median of --repeats runs: scored now
                    (retrieval + ranking for the default model) and from the precomputed table
  every user        every user's Top-10 (`recommend_all`)
  cold start        wall time and peak RSS of `python -m pipeline recommend --user 3` in a new process
  ranker training   the default models' training time, from their history
  reference mode    the reference model ranking the whole catalogue: the traced scorer (ModelScorer, used by
                    the evaluation of the 14-field models) against plain `Model.predict`
The targets are config.GOALS. The load average is recorded too: on a small shared machine, other work
moves every figure.
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

from pipeline import config
from pipeline.data.history import latest_context
from pipeline.files import write_json
from pipeline.ranking import model_files
from pipeline.ranking.model_files import load_training_log
from pipeline.ranking.scorers import top_n
from pipeline.serving.recommender import Recommender, RecommendError, parse_user
from pipeline.serving.terminal import fail

REPO = config.REPO_DIR


def seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def median_seconds(call, repeats: int) -> float:
    call()
    return statistics.median(seconds(call) for _ in range(repeats))


def plain_predict(model, batch_size: int = 65_536):
    """`Model.predict` as a score function: the reference whose ranking the fast path must match."""
    return lambda inputs: model.predict(
        {field: np.asarray(inputs[field]) for field in config.FIELDS}, batch_size=batch_size, verbose=0
    )[:, 0]


def scored_rows(users, n_movies: int, exclude) -> int:
    """How many (user, movie) pairs top_n scores for `users`: all of them minus the excluded ones."""
    return len(users) * n_movies - int(exclude["user_id"].isin(users["user_id"]).sum())


def cold_start(user_id: int, processed_dir: Path, models_dir: Path, runs: int) -> tuple[float | None, float | None]:
    """Median wall seconds and the largest peak RSS (GiB) of `python -m pipeline recommend` in new processes."""
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "recommend",
        "--user",
        str(user_id),
        "--processed-dir",
        str(processed_dir),
        "--models-dir",
        str(models_dir),
    ]
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
        peaks.append(int(done.stdout.split()[-1]) / 2**20)
    return (round(statistics.median(walls), 2), round(max(peaks), 2)) if runs else (None, None)


def reference_mode(rec, user_id: int, repeats: int, plain_users: int) -> dict:
    """The reference AutoInt+MLP over the whole catalogue: the traced scorer against plain Model.predict."""

    name = config.model_name(config.DEFAULT_ARCHITECTURE, "reference")
    fast = rec.scorer(name)
    plain = plain_predict(model_files.load_keras(config.model_path(name, "random", rec.models_dir)))
    code = rec.user_code(user_id)
    one = rec.users[rec.users["user_id"] == code].assign(**rec.context_codes(*rec.context(user_id)))
    rated = rec.user_ratings(code)[["user_id", "movie_id"]]
    out = {"model": name}
    for label, score_fn in (("fast", fast), ("plain", plain)):
        call = partial(top_n, score_fn, one, rec.movies, rated, n=config.TOP_N)
        out[f"one_user_ms_{label}"] = round(1000 * median_seconds(call, repeats), 1)
    users = rec.users.join(latest_context(rec.ratings), on="user_id", how="inner")
    exclude = rec.ratings[["user_id", "movie_id"]]
    all_rows = scored_rows(users, len(rec.movies), exclude)
    started = time.perf_counter()
    fast_top = top_n(fast, users, rec.movies, exclude, n=config.TOP_N, progress=True)
    out["all_users_s_fast"] = round(time.perf_counter() - started, 1)
    sample = users.head(plain_users)
    started = time.perf_counter()
    plain_top = top_n(plain, sample, rec.movies, exclude, n=config.TOP_N)
    out["all_users_s_plain"] = round(
        (time.perf_counter() - started) * all_rows / scored_rows(sample, len(rec.movies), exclude), 1
    )
    out["all_users_plain_measured_on_users"] = len(sample)
    both = fast_top[fast_top["user_id"].isin(sample["user_id"])].reset_index(drop=True)
    out["same_ranking_fast_and_plain"] = bool(
        len(both) == len(plain_top)
        and (
            both[["user_id", "rank", "movie_id"]].to_numpy() == plain_top[["user_id", "rank", "movie_id"]].to_numpy()
        ).all()
    )
    return out


def run_bench(
    processed_dir: Path, models_dir: Path, user_id: int, repeats: int, plain_users: int, cold_runs: int
) -> dict:

    name = config.model_name(config.DEFAULT_ARCHITECTURE, config.DEFAULT_MODE)
    rec = Recommender.load(processed_dir, models_dir, models=[name])
    results = {
        "model": name,
        "catalogue": len(rec.movies),
        "users": len(rec.users),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "targets": config.GOALS,
    }
    # Scored now (retrieval + ranking), in the user's own context given explicitly, which bypasses the
    # precomputed table; then the same request as make recommend makes it, answered from that table.
    year, month = rec.context(user_id, None, None)
    scored = partial(rec.recommend, user_id, year=year, month=month)
    results["one_user_ms"] = round(1000 * median_seconds(scored, repeats), 1)
    results["one_user_precomputed_ms"] = round(1000 * median_seconds(lambda: rec.recommend(user_id), repeats), 1)
    results["all_users_s"] = round(seconds(lambda: rec.recommend_all(progress=True)), 1)
    results["cold_recommend_s"], results["cold_recommend_peak_rss_gib"] = cold_start(
        user_id, processed_dir, models_dir, cold_runs
    )
    results["ranker_train_s"] = {
        ranker: load_training_log(ranker, "random", models_dir)["train_seconds"]
        for ranker in config.TWO_STAGE_MODELS
        if config.model_path(ranker, "random", models_dir).is_file()
    }
    results["reference_mode"] = reference_mode(rec, user_id, repeats, plain_users)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def table(results: dict, user_id: int, repeats: int) -> str:
    goals, reference = config.GOALS, results["reference_mode"]
    rows = [
        ("", "measured", "target"),
        (
            f"user {user_id}'s Top-10, retrieval + ranking, warm (median of {repeats})",
            f"{results['one_user_ms']} ms",
            f"≤ {goals['one_user_ms']} ms",
        ),
        (
            f"user {user_id}'s Top-10 from the precomputed table (median of {repeats})",
            f"{results['one_user_precomputed_ms']} ms",
            "",
        ),
        (
            f"every user's Top-10 ({results['users']:,} users)",
            f"{results['all_users_s']} s",
            f"≤ {goals['all_users_s']} s",
        ),
        (f"cold `recommend --user {user_id}`", f"{results['cold_recommend_s']} s", ""),
        ("  its peak RSS", f"{results['cold_recommend_peak_rss_gib']} GiB", f"≤ {goals['recommend_peak_rss_gib']} GiB"),
        *(
            (f"training {name}", f"{seconds_:.0f} s", f"≤ {goals['ranker_train_seconds']} s")
            for name, seconds_ in results["ranker_train_s"].items()
        ),
        (
            "reference mode: one user's catalogue, traced / plain predict",
            f"{reference['one_user_ms_fast']} / {reference['one_user_ms_plain']} ms",
            "",
        ),
        (
            "reference mode: every user's Top-10, traced / plain predict",
            f"{reference['all_users_s_fast']} / {reference['all_users_s_plain']} s",
            "",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(
        f"model {results['model']}; reference-mode traced and plain predict give the same Top-10: "
        f"{reference['same_ranking_fast_and_plain']}; {results['cpus']} CPUs, load average "
        f"{results['load_average_before'][0]} before, {results['load_average_after'][0]} after"
    )
    return "\n".join(lines)


def bench_command(
    user: str = typer.Option("3", "--user", help="The user of the one-user and cold-start figures."),
    repeats: int = typer.Option(config.BENCH["repeats"], min=1, help="Runs of the one-user figures (median kept)."),
    plain_users: int = typer.Option(
        config.BENCH["plain_users"], min=1, help="Users scored with plain predict in reference mode, then scaled up."
    ),
    cold_runs: int = typer.Option(config.BENCH["cold_runs"], min=0, help="Cold `recommend` processes timed."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "bench.json"),
) -> None:
    """Time recommending: one user warm, every user, a cold `recommend` (and its memory), the training."""
    try:
        user_id = parse_user(user)
        results = run_bench(processed_dir, models_dir, user_id, repeats, plain_users, cold_runs)
    except RecommendError as error:
        fail(error)
    write_json(out, results)
    typer.echo(table(results, user_id, repeats))
    typer.echo(f"wrote {out}")
