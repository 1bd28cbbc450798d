"""`make bench`: how fast the scoring path is, with the fast path (`ModelScorer`, whose grids run through
`autoint_grid`) and with plain `Model.predict`, both through `scoring.top_n`, the code that recommend,
recommend-all and evaluate use.

Prints a table and writes artifacts/bench.json:
  one user    one user's whole catalogue ranked, warm, median of --repeats runs (target ≤ 50 ms)
  all users   every user's Top-10 with one model (target ≤ 60 s); plain predict is timed on the first
              --plain-users users and scaled up by the number of scored rows
  cold start  wall time of `python -m pipeline recommend --user 3` in a new process
The load average is recorded too: on a small shared machine, other work moves every figure.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import typer

from pipeline import config
from pipeline.files import write_json
from pipeline.recommend import (DEFAULT_MODE, DEFAULT_MODEL, RecommendError, context, context_codes, fail,
                                load_recommender, model_name, parse_user, recommend,
                                user_code)

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"one_user_ms": 50, "all_users_s": 60}


def seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def median_seconds(call, repeats: int) -> float:
    call()
    return statistics.median(seconds(call) for _ in range(repeats))


def plain_predict(model, batch_size: int = 65_536):
    """`Model.predict` as a score function: the reference whose ranking the fast path must match."""
    return lambda inputs: model.predict({field: np.asarray(inputs[field]) for field in config.FIELDS},
                                        batch_size=batch_size, verbose=0)[:, 0]


def scored_rows(users, n_movies: int, exclude) -> int:
    """How many (user, movie) pairs top_n scores for `users`: all of them minus the excluded ones."""
    return len(users) * n_movies - int(exclude["user_id"].isin(users["user_id"]).sum())


def run_bench(processed_dir: Path, models_dir: Path, model: str, mode: str, user_id: int, repeats: int,
              plain_users: int, fast_users: int, cold_runs: int) -> dict:
    from pipeline.scoring import latest_context, top_n
    from pipeline.train import load_model

    name = model_name(model, mode)
    rec = load_recommender(processed_dir, models_dir, models=[model], mode=mode)
    fast = rec.scorer(name)
    plain = plain_predict(load_model(config.model_path(name, "random", models_dir)))
    n_movies = len(rec.movies)
    results = {"model": name, "catalogue": n_movies, "users": len(rec.users), "cpus": os.cpu_count(),
               "load_average_before": [round(x, 2) for x in os.getloadavg()], "targets": TARGETS}

    code = user_code(rec, user_id)
    one = rec.users[rec.users["user_id"] == code].assign(**context_codes(rec, *context(rec, user_id)))
    rated = rec.user_ratings(code)[["user_id", "movie_id"]]
    for label, score_fn in (("fast", fast), ("plain", plain)):
        results[f"one_user_ms_{label}"] = round(1000 * median_seconds(
            lambda: top_n(score_fn, one, rec.movies, rated, n=config.TOP_N), repeats), 1)
    results["one_user_recommend_call_ms"] = round(1000 * median_seconds(
        lambda: recommend(rec, user_id, model, mode=mode), repeats), 1)

    users = rec.users.join(latest_context(rec.ratings), on="user_id", how="inner")
    exclude = rec.ratings[["user_id", "movie_id"]]
    all_rows = scored_rows(users, n_movies, exclude)
    timed_users = users if fast_users <= 0 else users.head(fast_users)
    started = time.perf_counter()
    fast_top = top_n(fast, timed_users, rec.movies, exclude, n=config.TOP_N, progress=True)
    fast_s = time.perf_counter() - started
    results["all_users_rows"] = all_rows
    results["all_users_s_fast"] = round(fast_s * all_rows / scored_rows(timed_users, n_movies, exclude), 1)
    results["all_users_fast_measured_on_users"] = len(timed_users)

    sample = timed_users.head(plain_users)
    started = time.perf_counter()
    plain_top = top_n(plain, sample, rec.movies, exclude, n=config.TOP_N)
    plain_s = time.perf_counter() - started
    results["all_users_s_plain"] = round(plain_s * all_rows / scored_rows(sample, n_movies, exclude), 1)
    results["all_users_plain_measured_on_users"] = len(sample)
    both = fast_top[fast_top["user_id"].isin(sample["user_id"])].reset_index(drop=True)
    results["same_ranking_fast_and_plain"] = bool(
        len(both) == len(plain_top) and (both[["user_id", "rank", "movie_id"]].to_numpy()
                                         == plain_top[["user_id", "rank", "movie_id"]].to_numpy()).all())

    command = [sys.executable, "-m", "pipeline", "recommend", "--user", str(user_id), "--model", model,
               "--mode", mode, "--processed-dir", str(processed_dir), "--models-dir", str(models_dir)]
    cold = []
    for _ in range(cold_runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        cold.append(time.perf_counter() - started)
    results["cold_recommend_s"] = round(statistics.median(cold), 2) if cold else None
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def table(results: dict, user_id: int, repeats: int) -> str:
    def scaled(key: str) -> str:
        measured = results[f"all_users_{key}_measured_on_users"]
        return "" if measured == results["users"] else f" (from {measured:,} users)"

    rows = [
        ("", "fast path", "plain predict", "target"),
        (f"user {user_id}'s catalogue ranked, warm (median of {repeats})", f"{results['one_user_ms_fast']} ms",
         f"{results['one_user_ms_plain']} ms", f"≤ {TARGETS['one_user_ms']} ms"),
        ("  the whole recommend() call, warm", f"{results['one_user_recommend_call_ms']} ms", "", ""),
        (f"every user's Top-10 ({results['all_users_rows'] / 1e6:.1f}M rows)",
         f"{results['all_users_s_fast']} s{scaled('fast')}", f"{results['all_users_s_plain']} s{scaled('plain')}",
         f"≤ {TARGETS['all_users_s']} s"),
        (f"cold `recommend --user {user_id}`", f"{results['cold_recommend_s']} s", "", ""),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"model {results['model']}; same Top-10 from both paths: {results['same_ranking_fast_and_plain']}; "
                 f"{results['cpus']} CPUs, load average {results['load_average_before'][0]} before, "
                 f"{results['load_average_after'][0]} after")
    return "\n".join(lines)


def bench_command(
    model: str = typer.Option(DEFAULT_MODEL, help=f"One of {', '.join(config.MODEL_NAMES)}."),
    mode: str = typer.Option(DEFAULT_MODE, help="Training mode: ranking or seed."),
    user: str = typer.Option("3", "--user", help="The user of the one-user and cold-start figures."),
    repeats: int = typer.Option(50, min=1, help="Runs of the one-user figure (the median is kept)."),
    plain_users: int = typer.Option(200, min=1, help="Users scored with plain predict, then scaled up."),
    fast_users: int = typer.Option(0, min=0, help="Users scored with the fast path (0: all), then scaled up."),
    cold_runs: int = typer.Option(3, min=0, help="Cold `recommend` processes timed (the median is kept)."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "bench.json"),
) -> None:
    """Time the scoring path: one user warm, every user, and a cold `recommend`."""
    try:
        user_id = parse_user(user)
        results = run_bench(processed_dir, models_dir, model, mode, user_id, repeats, plain_users, fast_users,
                            cold_runs)
    except RecommendError as error:
        fail(error)
    write_json(out, results)
    typer.echo(table(results, user_id, repeats))
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(bench_command)
