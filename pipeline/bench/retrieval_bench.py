"""`python -m pipeline.bench.retrieval_bench`: the retrieval stage's cost by catalogue size, and ALS against EASE.

Writes artifacts/retrieval_bench.json, one section per command (each merged in, so one can be rerun alone):
  scale    EASE and ALS fitted on the training rows (a random 80 %) of ML-1M (3,706 movies) and of SYNTHETIC
           sets (5 M ratings: 8,287 movies; 25 M: 18,530), each fit in a child process: fit seconds, the
           peak RSS of the whole job (rows in, both models fitted and saved, then every user's 100 candidates
           and their two models' scores, as a candidate-list stage asks), with the load average around it.
           The synthetic rows come straight from the generator (pipeline.data.synth.generate), not from the
           preprocessed tables.
  quality  ML-1M: ALS's settings chosen on the random validation carve of the training rows (never the test
           rows), then ALS and EASE on the random split's test users: Recall@10 / NDCG@10 of retrieval alone
           (the full-catalogue protocol of `make evaluate`) and recall@100 of the 100 candidates.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config, config_evaluation
from pipeline.data import synth
from pipeline.data.processed import load_processed
from pipeline.evaluation import metrics, tune
from pipeline.files import write_json
from pipeline.processes import load_average, run_measured
from pipeline.ranking.scorers import ranked_frame
from pipeline.retrieval import als, retriever

BENCH_PATH = config.ARTIFACTS_DIR / "retrieval_bench.json"
DATASETS = ("ml1m", "5M", "25M")
# ALS's settings tried on the validation carve. The best is the fewest factors within NDCG_MARGIN of the best
# NDCG@10 (factors cost fit time and memory at 25 M ratings, a second place within the carve's noise does not);
# it is then tried with ITERATIONS too.
GRID = {"factors": (64, 128, 256), "regularization": (30.0, 100.0, 300.0), "alpha": (5.0, 10.0, 20.0)}
ITERATIONS = (15, 30)
NDCG_MARGIN = 0.002
CANDIDATES = 100

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


def training_rows(dataset: str, processed_dir: Path) -> tuple[pd.DataFrame, int, int]:
    """(user_id, movie_id, label) training rows of `dataset` as codes, and its numbers of users and movies."""
    if dataset == "ml1m":
        return retriever.training_rows(processed_dir, "random")
    ratings, movies, users = synth.generate(synth.parse_count(dataset))
    rows = pd.DataFrame(
        {
            "user_id": ratings["user_id"].to_numpy() - 1,
            "movie_id": ratings["movie_id"].to_numpy() - 1,
            "label": (ratings["rating"].to_numpy() >= config.LIKE_THRESHOLD).astype(np.int8),
        }
    )
    # A random 80 %, as the random split keeps for training.
    keep = np.random.default_rng(config.SPLIT_SEED).random(len(rows)) >= config.TEST_SIZE
    return rows[keep].reset_index(drop=True), len(users), len(movies)


@app.command("rows")
def rows_job(dataset: str, out: Path, processed_dir: Path = config.PROCESSED_DIR) -> None:
    """(job) Write `dataset`'s training rows to `out` (.npz)."""
    rows, n_users, n_movies = training_rows(dataset, processed_dir)
    np.savez(out, n_users=n_users, n_movies=n_movies, **{name: rows[name].to_numpy() for name in rows})


@app.command("fit")
def fit_job(rows_path: Path, kind: str, out: Path) -> None:
    """(job) Fit `kind` on the rows in `rows_path`, save it, then every user's candidates; timings → `out`."""
    started = time.perf_counter()
    with np.load(rows_path) as stored:
        rows = pd.DataFrame({name: stored[name] for name in ("user_id", "movie_id", "label")})
        n_users, n_movies = int(stored["n_users"]), int(stored["n_movies"])
    fitted = retriever.fit(rows, n_users, n_movies, kind)
    fit_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as scratch:
        saved = retriever.save(fitted, Path(scratch) / "retrieval.npz")
        file_mib = saved.stat().st_size / 2**20
    started = time.perf_counter()
    liked = retriever.liked_matrix(rows, n_users, n_movies)
    rated = retriever.interaction_matrix(rows, n_users, n_movies)
    movies, _ = fitted.top_k(liked, rated, CANDIDATES)
    fitted.rated_scores_at(rated, movies)
    candidates_seconds = time.perf_counter() - started
    write_json(
        out,
        {
            "users": n_users,
            "movies": n_movies,
            "training_rows": len(rows),
            "liked_rows": int((rows["label"] == 1).sum()),
            "fit_seconds": round(fit_seconds, 1),
            "file_mib": round(file_mib, 1),
            "candidates_seconds": round(candidates_seconds, 1),
        },
    )


def measured_job(*arguments: str) -> dict:
    """A job of this module in a child process: its JSON, exit code, wall seconds, peak RSS and load average."""
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-job-") as scratch:
        out = Path(scratch) / "out.json"
        before = load_average()
        measured = run_measured(["-m", "pipeline.bench.retrieval_bench", *arguments, str(out)])
        result = json.loads(out.read_text()) if out.is_file() else {}
    return {
        **result,
        "exit_code": measured["exit_code"],
        "seconds": round(measured["seconds"], 1),
        "peak_rss_gib": round(measured["peak_rss_gib"], 3),
        "load_average_before": before,
        "load_average_after": load_average(),
    }


def merged(section: str, results) -> dict:
    bench = json.loads(BENCH_PATH.read_text()) if BENCH_PATH.is_file() else {}
    bench[section] = results
    write_json(BENCH_PATH, bench)
    return bench


@app.command("scale")
def scale_command(
    datasets: list[str] = typer.Option(list(DATASETS), "--dataset", help="ml1m, or a SYNTHETIC size (5M, 25M)."),
    kinds: list[str] = typer.Option(list(retriever.KINDS), "--kind"),
    rows_dir: Path | None = typer.Option(None, help="Keep each dataset's rows here and reuse them (25M: ~4 min)."),
) -> None:
    """Fit time and peak RSS of each kind on each dataset, each in a child process; merged into the JSON by
    (dataset, kind)."""
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-rows-") as scratch:
        results = []
        for dataset in datasets:
            rows = (rows_dir or Path(scratch)) / f"{dataset}.npz"
            if not rows.is_file():
                rows.parent.mkdir(parents=True, exist_ok=True)
                made = run_measured(["-m", "pipeline.bench.retrieval_bench", "rows", dataset, str(rows)])
                if made["exit_code"]:
                    typer.echo(f"error: making the {dataset} rows failed (exit code {made['exit_code']})", err=True)
                    raise typer.Exit(2)
            for kind in kinds:
                run = {"dataset": dataset if dataset == "ml1m" else f"SYNTHETIC {dataset}", "kind": kind}
                run |= measured_job("fit", str(rows), kind)
                results.append(run)
                typer.echo(json.dumps(run))
    done = {(run["dataset"], run["kind"]) for run in results}
    earlier = json.loads(BENCH_PATH.read_text()).get("scale", []) if BENCH_PATH.is_file() else []
    merged("scale", [run for run in earlier if (run["dataset"], run["kind"]) not in done] + results)
    typer.echo(f"wrote {BENCH_PATH}")


def retrieval_metrics(fitted, train: pd.DataFrame, test: pd.DataFrame, n_users: int, n_movies: int) -> dict:
    """Retrieval alone over the whole catalogue for the test users with training rows (as `make evaluate`'s
    baselines): Recall@10, NDCG@10 of its top 10 unseen movies, and recall@100 of its 100 candidates."""
    users = np.intersect1d(test["user_id"].unique(), train["user_id"].unique())
    liked = retriever.liked_matrix(train, n_users, n_movies)[users]
    seen = retriever.interaction_matrix(train, n_users, n_movies)[users]
    movies, scores = fitted.top_k(liked, seen, CANDIDATES)
    top = ranked_frame(users, movies, scores)
    relevant = test.loc[test["label"] == 1, ["user_id", "movie_id"]]
    at_10 = metrics.full_catalog_metrics(top, relevant, 10)
    at_100 = metrics.full_catalog_metrics(top, relevant, CANDIDATES)
    return {
        "recall@10": round(at_10["recall@10"], 4),
        "ndcg@10": round(at_10["ndcg@10"], 4),
        f"recall@{CANDIDATES}": round(at_100[f"recall@{CANDIDATES}"], 4),
        "users": at_10["users"],
    }


def liked_model_only(train: pd.DataFrame, n_users: int, n_movies: int, settings: dict) -> als.Retrieval:
    """ALS's liked model alone (what retrieval ranks by; the grid needs no every-rating model)."""
    factors = als.item_factors(retriever.liked_matrix(train, n_users, n_movies), settings)
    return als.Retrieval(factors, factors, settings["regularization"], settings["alpha"])


def chosen_record(grid: list[dict]) -> dict:
    """The fewest factors (then fewest iterations) within NDCG_MARGIN of the best NDCG@10; of those the best."""
    top = max(record["ndcg@10"] for record in grid)
    near = [record for record in grid if record["ndcg@10"] >= top - NDCG_MARGIN]
    return min(near, key=lambda record: (record["factors"], record["iterations"], -record["ndcg@10"]))


@app.command("quality")
def quality_command(processed_dir: Path = config.PROCESSED_DIR) -> None:
    """ALS's settings on the validation carve, then ALS vs EASE on the test users of ML-1M's random split."""
    data = load_processed(processed_dir)
    n_users, n_movies = len(data.users), len(data.movies)
    carve = tune.carve_validation(data, 0, carve="random")
    grid = []

    def on_carve(settings: dict) -> dict:
        started = time.perf_counter()
        fitted = liked_model_only(carve.train, n_users, n_movies, settings)
        record = {**settings, "fit_seconds": round(time.perf_counter() - started, 1)}
        record |= retrieval_metrics(fitted, carve.train, carve.test, n_users, n_movies)
        typer.echo(json.dumps(record))
        grid.append(record)
        return record

    base = {**config.RETRIEVAL["als"], "iterations": ITERATIONS[0]}
    for values in itertools.product(*GRID.values()):
        on_carve({**base, **dict(zip(GRID, values))})
    best = chosen_record(grid)
    for iterations in ITERATIONS[1:]:
        on_carve({**{name: best[name] for name in base}, "iterations": iterations})
    chosen = {name: chosen_record(grid)[name] for name in base}
    ease_on_carve = retrieval_metrics(
        retriever.fit(carve.train, n_users, n_movies, "ease"), carve.train, carve.test, n_users, n_movies
    )
    test = {}
    for kind, settings in (("ease", {"ease_l2": config.EASE_L2}), ("als", chosen)):
        started = time.perf_counter()
        fitted = (
            retriever.fit(data.train, n_users, n_movies, "ease")
            if kind == "ease"
            else als.fit(data.train, n_users, n_movies, chosen)
        )
        seconds = time.perf_counter() - started
        test[kind] = {
            **settings,
            "fit_seconds": round(seconds, 1),
            **retrieval_metrics(fitted, data.train, data.test, n_users, n_movies),
        }
        typer.echo(f"test {kind}: {json.dumps(test[kind])}")
    merged(
        "quality",
        {
            "carve": {
                "share": config_evaluation.TUNE["validation_share"],
                "grid": grid,
                "ease": ease_on_carve,
                "chosen": chosen,
            },
            "test": test,
            "load_average_after": load_average(),
        },
    )
    typer.echo(f"wrote {BENCH_PATH}")


if __name__ == "__main__":
    app()
