"""The recommending core in the terminal: `recommend`, `recommend-all` and `precompute`, and their tables.

Each command parses its options, asks a Recommender (recommender.py) and prints. A user mistake is one line
on stderr and exit code 2, and everything is checked before TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from pipeline import config
from pipeline.files import atomic_path, record_timing
from pipeline.serving.answers import architectures, known_user_output, new_person_output
from pipeline.serving.errors import RecommendError, check_n, model_name, parse_user
from pipeline.serving.recommender import Recommender
from pipeline.serving.served_models import PRECOMPUTE, precomputed_path

HISTORY_ROWS = 15
RECOMMENDATION_COLUMNS = ("user_id", "rank", "movie_id", "title", "genres", "score")  # recommend-all's files
PRECOMPUTED_COLUMNS = ("user_id", "rank", "movie_id", "score")  # the precomputed tables


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


def because_text(because: list[dict], width: int) -> str:
    """The titles of a recommendation's "because you liked" movies, each cut to `width`, most first."""
    return "; ".join(clip(movie["title"], width) for movie in because)


def format_table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[columns].copy()
    if "score" in shown:
        shown["score"] = shown["score"].map(lambda s: f"{s:.4f}")
    if "title" in shown:
        shown["title"] = shown["title"].map(lambda title: clip(title, 48))
    if "because" in shown:
        shown["because"] = shown["because"].map(lambda because: because_text(because, 32))
        shown = shown.rename(columns={"because": "because you liked"})
    return shown.to_string(index=False)


def side_by_side(lists: dict[str, pd.DataFrame], n: int, because: bool) -> str:
    columns, headers = [np.arange(1, n + 1)], ["rank"]
    for name, top in lists.items():
        pad = [""] * (n - len(top))
        columns += [[clip(title, 40) for title in top["title"]] + pad, [f"{s:.4f}" for s in top["score"]] + pad]
        headers += [name, "score"]
        if because:
            columns.append([because_text(named, 20) for named in top["because"]] + pad)
            headers.append("because")
    table = pd.DataFrame(dict(enumerate(columns)))
    table.columns = headers
    return table.to_string(index=False)


def print_lists(lists: dict[str, pd.DataFrame], n: int, because: bool) -> None:
    """The Top-N lists as a table, or side by side when there are several; with the "because you liked" column
    when `because` (not in reference mode, whose movies retrieval did not propose)."""
    if len(lists) == 1:
        typer.echo(f"model {next(iter(lists))}")
        columns = ["rank", "movie_id", "title", "genres", "score", *(["because"] if because else [])]
        typer.echo(format_table(next(iter(lists.values())), columns))
    else:
        typer.echo(side_by_side(lists, n, because))


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
    print_lists(output["recommendations"], n, because=output["mode"] == "two_stage")


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
    runtime: config.Runtime = typer.Option(config.Runtime.litert, help=config.RUNTIME_HELP),
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
        rec = Recommender.load(processed_dir, models_dir, runtime=runtime.value)
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
    record_timing(models_dir.parent, "recommend", time.perf_counter() - started)


def write_tables(
    paths: dict[str, Path], chunks: Iterable[dict[str, pd.DataFrame]], columns: list[str], **manifest
) -> dict[str, tuple[int, int]]:
    """Each model's frames of `chunks` (one {name: frame} per chunk of users) into its parquet file at `paths`
    as they come, one row group per chunk, so that no more than a chunk is ever held; each file is renamed into
    place (with its manifest, as pipeline.files.atomic_path takes it) once every chunk is in. Returns {name:
    (rows, users) written}."""
    written = {name: (0, 0) for name in paths}
    with contextlib.ExitStack() as files:
        temporary = {name: files.enter_context(atomic_path(path, **manifest)) for name, path in paths.items()}
        writers = {}
        for chunk in chunks:
            for name, frame in chunk.items():
                table = pa.Table.from_pandas(frame[columns], preserve_index=False)
                if name not in writers:  # closed before the files are renamed: the stack unwinds last in, first out
                    writers[name] = files.enter_context(pq.ParquetWriter(temporary[name], table.schema))
                writers[name].write_table(table.cast(writers[name].schema))
                rows, users = written[name]
                written[name] = (rows + len(frame), users + frame["user_id"].nunique())
    return written


def recommend_all_command(
    architecture: config.Architecture = typer.Option(
        config.DEFAULT_ARCHITECTURE, "--architecture", "--model", help="'both': a file each (--model: its old name)."
    ),
    mode: config.ServedMode = typer.Option(config.DEFAULT_MODE),
    n: int = typer.Option(config.TOP_N, "--n", min=1),
    runtime: config.Runtime = typer.Option(config.Runtime.litert, help=config.RUNTIME_HELP),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out_dir: Path = typer.Option(
        None, help="Writes recommendations_<model>.parquet here; default: the folder that holds --models-dir."
    ),
) -> None:
    """Write every user's Top-N unseen movies to artifacts/recommendations_<model>.parquet."""
    out_dir = out_dir or models_dir.parent
    try:
        names = [model_name(choice, mode.value) for choice in architectures(architecture.value)]
        rec = Recommender.load(processed_dir, models_dir, runtime=runtime.value)
        paths = {name: out_dir / f"recommendations_{name}.parquet" for name in names}
        chunks = rec.every_users_top(names, n, progress=True)
        for name, (rows, users) in write_tables(paths, chunks, list(RECOMMENDATION_COLUMNS)).items():
            typer.echo(f"wrote {rows:,} rows ({users:,} users × {n}) to {paths[name]}")
    except RecommendError as error:
        fail(error)


def precompute_command(
    n: int = typer.Option(config.PRECOMPUTED_N, "--n", min=1, help="Movies kept per user."),
    model: list[config.Model] = typer.Option(
        None, "--model", help="Only this two-stage model (repeatable); default: both."
    ),
    runtime: config.Runtime = typer.Option(config.Runtime.litert, help=config.RUNTIME_HELP),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
) -> None:
    """Every user's default Top-N of the two-stage models → <models-dir>/../precomputed/<model>.parquet
    (artifacts/precomputed/), which recommend, the web page and the service answer default requests from."""
    started = time.perf_counter()
    names = list(dict.fromkeys(name.value for name in model)) if model else list(config.TWO_STAGE_MODELS)
    try:
        not_two_stage = [name for name in names if not config.MODELS[name].candidates]
        if not_two_stage:
            raise RecommendError(f"precompute makes two-stage models' tables; not one: {', '.join(not_two_stage)}")
        rec = Recommender.load(processed_dir, models_dir, runtime=runtime.value)
        paths = {name: precomputed_path(name, models_dir) for name in names}
        chunks = rec.every_users_top(names, n, progress=True)
        for name, (_, users) in write_tables(paths, chunks, list(PRECOMPUTED_COLUMNS), producer=PRECOMPUTE).items():
            typer.echo(f"precomputed {name}: {users:,} users × {n} → {paths[name]}")
    except RecommendError as error:
        fail(error)
    record_timing(models_dir.parent, "precompute", time.perf_counter() - started)
