"""The recommending core in the terminal: `recommend`, `recommend-all` and `precompute`, and their tables.

Each command parses its options, asks a Recommender (recommender.py) and prints. A user mistake is one line
on stderr and exit code 2, and everything is checked before TensorFlow is imported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config
from pipeline.files import record_timing, write_parquet
from pipeline.serving.answers import architectures, known_user_output, new_person_output
from pipeline.serving.recommender import (
    Recommender,
    RecommendError,
    check_n,
    check_trained,
    model_name,
    parse_user,
    precomputed_path,
)

HISTORY_ROWS = 15


def fail(error: RecommendError):
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def whole_number(text, what: str) -> int | None:
    if text is None:
        return None
    try:
        return int(str(text).strip())
    except ValueError:
        raise RecommendError(f"{what} must be a whole number, not {text!r}") from None


def parse_liked(text: str) -> list[int]:
    """ "2571,1196,260" → [2571, 1196, 260]; commas or spaces separate, duplicates are dropped later."""
    parts = [part for part in str(text).replace(",", " ").split() if part]
    if not parts:
        raise RecommendError('the liked list is empty; give MovieLens movie IDs, e.g. LIKED="2571,1196,260"')
    bad = [part for part in parts if not part.isdigit()]
    if bad:
        raise RecommendError(f"the liked list takes MovieLens movie IDs (whole numbers), not {', '.join(bad[:5])}")
    return [int(part) for part in parts]


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, with "…" as the last one when it was longer."""
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[columns].copy()
    if "score" in shown:
        shown["score"] = shown["score"].map(lambda s: f"{s:.4f}")
    if "title" in shown:
        shown["title"] = shown["title"].map(lambda title: clip(title, 48))
    return shown.to_string(index=False)


def side_by_side(lists: dict[str, pd.DataFrame], n: int) -> str:
    columns, headers = [np.arange(1, n + 1)], ["rank"]
    for name, top in lists.items():
        pad = [""] * (n - len(top))
        columns += [[clip(title, 40) for title in top["title"]] + pad, [f"{s:.4f}" for s in top["score"]] + pad]
        headers += [name, "score"]
    table = pd.DataFrame(dict(enumerate(columns)))
    table.columns = headers
    return table.to_string(index=False)


def print_lists(lists: dict[str, pd.DataFrame], n: int) -> None:
    if len(lists) == 1:
        typer.echo(f"model {next(iter(lists))}")
        typer.echo(format_table(next(iter(lists.values())), ["rank", "movie_id", "title", "genres", "score"]))
    else:
        typer.echo(side_by_side(lists, n))


def print_output(output: dict, history: int, n: int) -> None:
    who, liked, when = output["profile"], output["liked_history"], output["context"]
    if who["user_id"] is None:
        typer.echo(f"a new person: {who['gender']}, age {who['age']}, {who['occupation']}")
        typer.echo(f"\nliked movies given: {len(liked)}")
        typer.echo(format_table(liked, ["movie_id", "title", "genres"]))
    else:
        typer.echo(f"user {who['user_id']}: {who['gender']}, age {who['age']}, {who['occupation']}, zip {who['zip']}")
        shown = liked if history <= 0 else liked.head(history)
        typer.echo(f"\nliked history: {len(liked)} movies rated 4 or 5, newest first")
        typer.echo(format_table(shown, ["date", "rating", "movie_id", "title", "genres"]) if len(liked) else "(none)")
        if len(shown) < len(liked):
            typer.echo(f"... and {len(liked) - len(shown)} more (--history 0 shows all)")
    typer.echo(
        f"\nTop {n} unseen movies in {when['year']}-{when['month']:02d} ({when['source']}), {output['mode']} mode:"
    )
    print_lists(output["recommendations"], n)


def output_json(output: dict) -> str:
    return json.dumps(
        {
            key: value.to_dict("records")
            if isinstance(value, pd.DataFrame)
            else {name: top.to_dict("records") for name, top in value.items()}
            if key == "recommendations"
            else value
            for key, value in output.items()
        },
        indent=2,
        ensure_ascii=False,
    )


def recommend_command(
    user: str = typer.Option(None, "--user", help="MovieLens user ID (default 3 unless --liked is given)."),
    liked: str = typer.Option(
        None,
        "--liked",
        help='A new person: the MovieLens IDs of movies they like, e.g. "2571,1196,260" (instead of --user).',
    ),
    gender: str = typer.Option(None, help="A new person's gender, M or F (optional)."),
    age: int = typer.Option(None, help="A new person's age group: 1, 18, 25, 35, 45, 50 or 56 (optional)."),
    occupation: int = typer.Option(None, help="A new person's occupation code, 0-20 (optional)."),
    architecture: config.Architecture = typer.Option(
        config.DEFAULT_ARCHITECTURE, "--architecture", "--model", help="'both': side by side (--model: its old name)."
    ),
    mode: config.ServedMode = typer.Option(
        config.DEFAULT_MODE,
        help="two_stage: retrieval + AutoInt ranking (default); reference: the original project's models.",
    ),
    year: str = typer.Option(
        None, metavar="INTEGER", help="Rating-time context year; default: that of the user's latest rating."
    ),
    month: str = typer.Option(None, metavar="INTEGER", help="Rating-time context month, 1-12; default: as year."),
    n: str = typer.Option(str(config.TOP_N), "--n", metavar="INTEGER", help="How many movies."),
    history: int = typer.Option(HISTORY_ROWS, help="Liked movies to print (0: all); --json has all."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Print a user's (or a new person's) profile, liked history and Top-N unseen movies."""
    started = time.perf_counter()
    try:
        if user is not None and liked is not None:
            raise RecommendError("give --user or --liked, not both")
        year, month, n = whole_number(year, "year"), whole_number(month, "month"), whole_number(n, "N")
        check_n(n)
        rec = Recommender.load(processed_dir, models_dir)
        rec.check_context(year, month)
        if liked is not None:
            liked_ids = parse_liked(liked)
            output = new_person_output(
                rec, liked_ids, architecture.value, mode.value, gender, age, occupation, year, month, n
            )
        else:
            output = known_user_output(rec, parse_user(user or "3"), architecture.value, mode.value, year, month, n)
    except RecommendError as error:
        fail(error)
    if as_json:
        typer.echo(output_json(output))
        return
    print_output(output, history, n)
    record_timing(config.ARTIFACTS_DIR, "recommend", time.perf_counter() - started)


def recommend_all_command(
    architecture: config.Architecture = typer.Option(
        config.DEFAULT_ARCHITECTURE, "--architecture", "--model", help="'both': a file each (--model: its old name)."
    ),
    mode: config.ServedMode = typer.Option(config.DEFAULT_MODE),
    n: int = typer.Option(config.TOP_N, "--n", min=1),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out_dir: Path = typer.Option(config.ARTIFACTS_DIR, help="Writes recommendations_<model>.parquet here."),
) -> None:
    """Write every user's Top-N unseen movies to artifacts/recommendations_<model>.parquet."""
    try:
        names = {choice: model_name(choice, mode.value) for choice in architectures(architecture.value)}
        rec = Recommender.load(processed_dir, models_dir)
        check_trained(models_dir, names.values())  # all of them before the first long run
        for choice, name in names.items():
            top = rec.recommend_all(choice, n, progress=True, mode=mode.value)
            out = out_dir / f"recommendations_{name}.parquet"
            write_parquet(out, top)
            typer.echo(f"wrote {len(top):,} rows ({top['user_id'].nunique():,} users × {n}) to {out}")
    except RecommendError as error:
        fail(error)


def precompute_command(
    n: int = typer.Option(config.PRECOMPUTED_N, "--n", min=1, help="Movies kept per user."),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Every user's default Top-N of both two-stage models → artifacts/precomputed/<model>.parquet, which
    recommend, the web page and the service answer default requests from."""
    started = time.perf_counter()
    try:
        rec = Recommender.load(processed_dir, models_dir)
        check_trained(models_dir, config.TWO_STAGE_MODELS)
        for architecture in config.ARCHITECTURES:
            name = model_name(architecture, "two_stage")
            top = rec.recommend_all(architecture, n, progress=True, mode="two_stage")
            out = precomputed_path(name, models_dir)
            write_parquet(out, top[["user_id", "rank", "movie_id", "score"]])
            typer.echo(f"precomputed {name}: {top['user_id'].nunique():,} users × {n} → {out}")
    except RecommendError as error:
        fail(error)
    record_timing(models_dir.parent, "precompute", time.perf_counter() - started)
