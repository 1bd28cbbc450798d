"""`make bench`: how fast scoring is, with the traced fast path and with plain `Model.predict`.

Prints and writes artifacts/bench.json: one user's full catalogue scored warm (median of repeats),
every user's Top-10 with one model (the plain path is timed on a sample of users and scaled up),
and the wall time of `python -m pipeline recommend --user 3` from a cold process.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import typer

from pipeline import config
from pipeline.files import write_json
from pipeline.recommend import DEFAULT_MODE, RecommendError, load_recommender, model_name


def median_seconds(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_command(
    model: str = typer.Option("autoint", help=f"One of {', '.join(config.MODEL_NAMES)}."),
    repeats: int = typer.Option(20, min=1),
    plain_sample_users: int = typer.Option(200, min=1, help="Users scored with plain predict, then scaled up."),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "bench.json"),
) -> None:
    """Time the scoring hot path: one user, every user, and a cold `recommend`."""
    from pipeline.scoring import ModelScorer, latest_context, top_n

    try:
        rec = load_recommender()
        name = model_name(model, DEFAULT_MODE)
        fast = rec.scorer(name)
    except RecommendError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    keras_model = fast._model
    plain = lambda inputs: keras_model.predict(  # noqa: E731
        {field: inputs[field] for field in config.FIELDS}, batch_size=65_536, verbose=0)[:, 0]
    users = rec.data.users.join(latest_context(rec.ratings), on="user_id", how="inner")
    exclude = rec.ratings[["user_id", "movie_id"]]
    one = users.head(1)

    results = {"model": name, "catalogue": len(rec.data.movies), "users": len(users)}
    for label, score_fn in (("fast", fast), ("plain", plain)):
        results[f"one_user_ms_{label}"] = round(1000 * median_seconds(
            lambda: top_n(score_fn, one, rec.data.movies, exclude, n=config.TOP_N), repeats), 1)
    started = time.perf_counter()
    top_n(fast, users, rec.data.movies, exclude, n=config.TOP_N, progress=True)
    results["all_users_s_fast"] = round(time.perf_counter() - started, 1)
    sample = users.head(plain_sample_users)
    started = time.perf_counter()
    top_n(plain, sample, rec.data.movies, exclude, n=config.TOP_N)
    results["all_users_s_plain_estimated"] = round((time.perf_counter() - started) * len(users) / len(sample), 1)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "recommend", "--user", "3", "--model", model],
                   check=True, capture_output=True)
    results["cold_recommend_user_3_s"] = round(time.perf_counter() - started, 1)

    write_json(out, results)
    typer.echo(f"model {name}, {results['catalogue']:,} movies, {results['users']:,} users")
    typer.echo(f"one user's catalogue, warm:   fast {results['one_user_ms_fast']} ms, "
               f"plain predict {results['one_user_ms_plain']} ms")
    typer.echo(f"every user's Top-10:          fast {results['all_users_s_fast']} s, "
               f"plain predict ~{results['all_users_s_plain_estimated']} s (from {len(sample)} users)")
    typer.echo(f"cold `recommend --user 3`:    {results['cold_recommend_user_3_s']} s")
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    typer.run(bench_command)
