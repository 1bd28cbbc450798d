"""SYNTHETIC MovieLens-format data for scale tests only: `python -m pipeline synth --ratings 25M`.

Writes ratings.dat, movies.dat and users.dat in ML-1M's own format (`::`-separated, latin-1, the same
fields and value ranges) into data/synthetic-<size>/ml-1m-format/, next to a SYNTHETIC.md marker that
says what made it. It is never real data: it lives outside data/ml-1m/, carries the marker, and every
bench made from it says "synthetic". It exists so that training can be measured at 5 M or 25 M ratings.

Its shape follows ML-1M: every user rates at least 20 movies and user activity is heavy-tailed
(log-normal), movie popularity is heavy-tailed, genres and demographics follow ML-1M's mix, timestamps
span ML-1M's 2000-04 .. 2003-02. A planted preference structure gives a model something to learn:
users belong to taste clusters that depend on gender and age, movies carry latent tastes that depend
on their genres, and both which movies a user rates and how they rate them follow the match of the
two (plus a movie quality and a user leniency).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config, config_scale
from pipeline.data import movielens
from pipeline.files import atomic_path, write_text
from pipeline.processes import run_measured

# ML-1M's genre frequencies (movies per genre), its age groups with their share of users, and its span.
GENRE_WEIGHTS = (503, 283, 105, 251, 1200, 211, 127, 1603, 68, 44, 343, 114, 106, 471, 276, 492, 143, 68)
AGES = (1, 18, 25, 35, 45, 50, 56)
AGE_WEIGHTS = (222, 1103, 2096, 1193, 550, 496, 380)
FIRST_TIMESTAMP, LAST_TIMESTAMP = 956_703_932, 1_046_454_590
MARKER = "SYNTHETIC.md"


def parse_count(text: str) -> int:
    """'25M' → 25_000_000, '500k' → 500_000, '1000' → 1000."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", str(text))
    if not match:
        raise ValueError(f"not a rating count: {text!r} (e.g. 25M, 500k, 100000)")
    count = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    return int(round(count))


def size_label(ratings: int) -> str:
    """25_000_000 → '25m', 500_000 → '500k' (the folder name's size)."""
    if ratings % 1_000_000 == 0:
        return f"{ratings // 1_000_000}m"
    if ratings % 1_000 == 0:
        return f"{ratings // 1_000}k"
    return str(ratings)


def synthetic_root(ratings: int, data_dir: Path = config.DATA_DIR) -> Path:
    """data/synthetic-<size>/: holds ml-1m-format/ (raw files), processed/ and the marker."""
    return data_dir / f"{config_scale.SYNTH['folder_prefix']}{size_label(ratings)}"


def is_synthetic(folder: Path) -> bool:
    """True for a synthetic root, its ml-1m-format/ or processed/ folder (a marker here or one level up)."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or (folder.parent / MARKER).is_file()


# --- The generator ----------------------------------------------------------------------------------


def shape(ratings: int) -> dict:
    """How many users and movies `ratings` ratings spread over (ML-1M's ratios at 1 M)."""
    scale = ratings / 1_000_000
    users = max(20, int(round(ratings / config_scale.SYNTH["ratings_per_user"])))
    # Small sets keep room for the heaviest users (at most half the catalogue each).
    movies = max(
        int(4 * config_scale.SYNTH["ratings_per_user"]),
        int(round(config_scale.SYNTH["movies_at_1m"] * scale ** config_scale.SYNTH["movies_exponent"])),
    )
    return {"ratings": ratings, "users": users, "movies": movies}


def user_counts(n_ratings: int, n_users: int, n_movies: int, rng) -> np.ndarray:
    """Ratings per user: at least min(20, ...) each, log-normal tail, summing exactly to n_ratings."""
    floor = min(config_scale.SYNTH["min_ratings_per_user"], n_ratings // n_users, n_movies // 2)
    cap = n_movies // 2
    extra = rng.lognormal(0.0, config_scale.SYNTH["activity_sigma"], n_users)
    counts = floor + np.floor(extra / extra.sum() * (n_ratings - floor * n_users)).astype(np.int64)
    counts = np.minimum(counts, cap)
    # Hand out what rounding and the cap left over, one at a time to random users with room.
    while (missing := n_ratings - counts.sum()) > 0:
        room = np.flatnonzero(counts < cap)
        if len(room) == 0:
            raise ValueError(f"{n_ratings:,} ratings do not fit {n_users:,} users × {n_movies:,} movies")
        counts[rng.choice(room, size=min(missing, len(room)), replace=False)] += 1
    return counts


def users_table(n_users: int, rng) -> pd.DataFrame:
    ages = rng.choice(AGES, size=n_users, p=np.array(AGE_WEIGHTS) / sum(AGE_WEIGHTS))
    # ML-1M has 3,439 zip codes for 6,040 users; they stay 5-digit strings.
    pool = rng.choice(np.arange(10_000, 100_000), size=min(90_000, max(10, int(n_users * 0.57))), replace=False)
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1),
            "gender": np.where(rng.random(n_users) < 0.717, "M", "F"),
            "age": ages,
            "occupation": rng.integers(0, 21, n_users),
            "zip": rng.choice(pool, size=n_users).astype(str),
        }
    )


def movies_table(n_movies: int, rng) -> pd.DataFrame:
    # Most movies are recent, as in ML-1M (1919 .. 2000, a long tail of old films).
    years = np.clip(2000 - np.floor(rng.exponential(11.0, n_movies)), 1919, 2000).astype(int)
    weights = np.array(GENRE_WEIGHTS, dtype=float) / sum(GENRE_WEIGHTS)
    counts = rng.choice((1, 2, 3, 4), size=n_movies, p=(0.5, 0.3, 0.15, 0.05))
    genres = [
        "|".join(
            movielens.ML1M_GENRES[i]
            for i in sorted(rng.choice(len(movielens.ML1M_GENRES), size=k, replace=False, p=weights))
        )
        for k in counts
    ]
    return pd.DataFrame(
        {
            "movie_id": np.arange(1, n_movies + 1),
            "title": [f"Synthetic Movie {i} ({year})" for i, year in zip(range(1, n_movies + 1), years)],
            "genres": genres,
        }
    )


def tastes(users: pd.DataFrame, movies: pd.DataFrame, rng) -> dict[str, np.ndarray]:
    """The planted structure: taste clusters of users (drawn from gender and age), latent tastes of users
    and movies (a movie's from its genres), movie popularity and quality, user leniency."""
    settings = config_scale.SYNTH
    dim, clusters = settings["taste_dim"], settings["taste_clusters"]
    centres = rng.normal(0.0, 1.0, (clusters, dim))
    by_gender = rng.normal(0.0, 1.0, (2, clusters))
    by_age = rng.normal(0.0, 1.0, (len(AGES), clusters))
    logits = by_gender[(users["gender"] == "F").to_numpy(int)] + by_age[np.searchsorted(AGES, users["age"])]
    cluster = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    user_taste = centres[cluster] + rng.normal(0.0, 0.6, (len(users), dim))

    genre_taste = rng.normal(0.0, 1.0, (len(movielens.ML1M_GENRES), dim))
    index = {genre: i for i, genre in enumerate(movielens.ML1M_GENRES)}
    movie_taste = np.stack(
        [genre_taste[[index[g] for g in genres.split("|")]].mean(axis=0) for genres in movies["genres"]]
    )
    movie_taste += rng.normal(0.0, 0.7, movie_taste.shape)
    log_popularity = rng.normal(0.0, settings["popularity_sigma"], len(movies))
    quality = rng.normal(0.0, 0.5, len(movies)) + 0.15 * log_popularity
    return {
        "cluster": cluster,
        "centres": centres,
        "user": user_taste.astype(np.float32),
        "movie": movie_taste.astype(np.float32),
        "log_popularity": log_popularity,
        "quality": quality,
        "leniency": rng.normal(0.0, 0.45, len(users)),
    }


def rated_pairs(counts: np.ndarray, taste: dict, n_movies: int, rng) -> np.ndarray:
    """Which movies each user rates, as sorted keys user * n_movies + movie (user and movie from 0).

    A user of cluster k draws movies with probability ∝ popularity × exp(match of k's taste and the
    movie's), without repeats; draws that repeat are redrawn, from the fourth round on uniformly, so that the
    heaviest users (up to half the catalogue) finish.
    """
    dim = taste["centres"].shape[1]
    affinity = taste["centres"] @ taste["movie"].T.astype(float) / np.sqrt(dim)
    weights = np.exp(taste["log_popularity"][None, :] + config_scale.SYNTH["selection_strength"] * affinity)
    weights /= weights.sum(axis=1, keepdims=True)
    have = np.empty(0, dtype=np.int64)
    deficit = counts.astype(np.int64).copy()
    for attempt in range(config_scale.SYNTH["max_rounds"]):
        if not deficit.any():
            break
        drawn = []
        for k in range(len(weights)):
            members = np.flatnonzero((taste["cluster"] == k) & (deficit > 0))
            if len(members) == 0:
                continue
            draws = deficit[members] * (1 if attempt < 3 else 2) + deficit[members] // 10 + 1
            p = weights[k] if attempt < 3 else None
            movies = rng.choice(n_movies, size=int(draws.sum()), p=p)
            drawn.append(np.repeat(members, draws) * n_movies + movies)
        new = np.sort(np.concatenate(drawn))
        new = new[np.r_[True, new[1:] != new[:-1]]]
        if len(have):
            found = np.minimum(np.searchsorted(have, new), len(have) - 1)
            new = new[have[found] != new]
        # Keep a random `deficit` of each user's new movies.
        new = new[rng.permutation(len(new))]
        new = new[np.argsort(new // n_movies, kind="stable")]
        user = new // n_movies
        starts = np.searchsorted(user, user, side="left")
        keep = new[np.arange(len(new)) - starts < deficit[user]]
        deficit -= np.bincount(keep // n_movies, minlength=len(deficit))
        have = np.sort(np.concatenate([have, keep]))
    if deficit.any():
        raise RuntimeError(f"{int(deficit.sum())} ratings could not be placed; lower the rating count")
    return have


def ratings_table(keys: np.ndarray, n_movies: int, taste: dict, rng, chunk: int = 2_000_000) -> pd.DataFrame:
    """Ratings (1-5) and timestamps for the rated pairs, in user order and by time within a user."""
    settings = config_scale.SYNTH
    n_users = len(taste["leniency"])
    span = LAST_TIMESTAMP - FIRST_TIMESTAMP
    first = FIRST_TIMESTAMP + rng.beta(0.6, 2.5, n_users) * span * 0.9
    active = np.exp(rng.normal(np.log(30 * 86_400), 2.0, n_users))
    user, movie = keys // n_movies, keys % n_movies
    rating = np.empty(len(keys), dtype=np.int64)
    timestamp = np.empty(len(keys), dtype=np.int64)
    dim = taste["user"].shape[1]
    for start in range(0, len(keys), chunk):
        u, m = user[start : start + chunk], movie[start : start + chunk]
        match = np.einsum("ij,ij->i", taste["user"][u], taste["movie"][m]) / np.sqrt(dim)
        score = (
            settings["mean_score"]
            + taste["leniency"][u]
            + taste["quality"][m]
            + settings["taste_strength"] * match
            + rng.normal(0.0, settings["noise"], len(u))
        )
        rating[start : start + chunk] = np.clip(np.rint(score), 1, 5)
        when = first[u] + rng.random(len(u)) ** 2 * active[u]
        timestamp[start : start + chunk] = np.minimum(when, LAST_TIMESTAMP).astype(np.int64)
    order = np.lexsort((timestamp, user))
    return pd.DataFrame(
        {
            "user_id": user[order] + 1,
            "movie_id": movie[order] + 1,
            "rating": rating[order],
            "timestamp": timestamp[order],
        }
    )


def generate(n_ratings: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ratings, movies, users) frames with ML-1M's columns and value ranges; synthetic."""
    rng = np.random.default_rng(seed)
    size = shape(n_ratings)
    users = users_table(size["users"], rng)
    movies = movies_table(size["movies"], rng)
    taste = tastes(users, movies, rng)
    counts = user_counts(n_ratings, size["users"], size["movies"], rng)
    keys = rated_pairs(counts, taste, size["movies"], rng)
    return ratings_table(keys, size["movies"], taste, rng), movies, users


# --- Writing ----------------------------------------------------------------------------------------


def write_dat(path: Path, frame: pd.DataFrame, chunk: int = 2_000_000) -> None:
    """`::`-separated, latin-1, no header, as ML-1M. pandas writes one-character separators, so every
    field is followed by an empty column and the file is written with ':'."""
    columns = list(frame.columns)
    with atomic_path(path) as tmp, open(tmp, "w", encoding=movielens.RAW_ENCODING, newline="\n") as out:
        for start in range(0, len(frame), chunk):
            part = frame.iloc[start : start + chunk]
            spaced = pd.DataFrame({f"{i}": part[column].to_numpy() for i, column in enumerate(columns)})
            for i in range(len(columns) - 1):
                spaced.insert(2 * i + 1, f"sep{i}", "")
            spaced.to_csv(out, sep=":", header=False, index=False, lineterminator="\n")


def marker_text(n_ratings: int, seed: int, sizes: dict, seconds: float) -> str:
    facts = {
        "synthetic": True,
        "generator": "pipeline/data/synth.py",
        "command": f"python -m pipeline synth --ratings {n_ratings} --seed {seed}",
        "seed": seed,
        **sizes,
        "seconds": round(seconds, 1),
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    return (
        "# SYNTHETIC DATA: not MovieLens\n\n"
        "Generated by pipeline/data/synth.py for scale tests only (training throughput and memory). Same file\n"
        "format and value ranges as MovieLens 1M, but every user, movie and rating is made up; never\n"
        "report a model quality figure from it as a MovieLens result.\n\n"
        f"```json\n{json.dumps(facts, indent=2)}\n```\n"
    )


def write_synthetic(root: Path, n_ratings: int, seed: int = 0) -> Path:
    """Generate and write root/ml-1m-format/{ratings,movies,users}.dat and the markers; returns the raw dir.

    The markers are written first and the raw files each atomically, so a half-finished run is still
    marked synthetic and never passes for real data.
    """
    started = time.perf_counter()
    raw_dir = Path(root) / config_scale.SYNTH["raw_folder"]
    raw_dir.mkdir(parents=True, exist_ok=True)
    for folder in (Path(root), raw_dir):
        write_text(folder / MARKER, marker_text(n_ratings, seed, shape(n_ratings), 0.0))
    ratings, movies, users = generate(n_ratings, seed)
    write_dat(raw_dir / "movies.dat", movies)
    write_dat(raw_dir / "users.dat", users)
    write_dat(raw_dir / "ratings.dat", ratings)
    sizes = {
        "ratings": len(ratings),
        "users": len(users),
        "movies": len(movies),
        "positives": round(float((ratings["rating"] >= config.LIKE_THRESHOLD).mean()), 4),
    }
    for folder in (Path(root), raw_dir):
        write_text(folder / MARKER, marker_text(n_ratings, seed, sizes, time.perf_counter() - started))
    return raw_dir


def preprocess_synthetic(root: Path, echo=print) -> dict:
    """Run `python -m pipeline preprocess` on root's raw files into root/processed (a child process, so
    its peak RSS is its own), and mark the output synthetic. Returns seconds and peak RSS."""
    raw_dir, out_dir = Path(root) / config_scale.SYNTH["raw_folder"], Path(root) / "processed"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / MARKER, (Path(root) / MARKER).read_text())
    command = ["-m", "pipeline", "preprocess", "--raw-dir", str(raw_dir), "--out-dir", str(out_dir)]
    result = run_measured(command)
    if result["exit_code"] != 0:
        raise RuntimeError(f"preprocess of {raw_dir} failed with exit code {result['exit_code']}")
    echo(f"preprocess (synthetic): {result['seconds']:.0f} s, peak RSS {result['peak_rss_gib']:.2f} GiB")
    return result


def synth_command(
    ratings: str = typer.Option(..., help="How many ratings, e.g. 1M, 5M, 25M."),
    seed: int = typer.Option(0, help="Seed of the generator."),
    data_dir: Path = typer.Option(config.DATA_DIR, help="The synthetic folder goes here, as synthetic-<size>/."),
    preprocess: bool = typer.Option(
        True, "--preprocess/--no-preprocess", help="Also run `python -m pipeline preprocess` into <folder>/processed."
    ),
) -> None:
    """Write a SYNTHETIC MovieLens-format dataset (for scale tests only) into data/synthetic-<size>/."""
    try:
        count = parse_count(ratings)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    root = synthetic_root(count, data_dir)
    started = time.perf_counter()
    raw_dir = write_synthetic(root, count, seed)
    typer.echo(
        f"SYNTHETIC data: wrote {raw_dir}/{{ratings,movies,users}}.dat ({count:,} ratings, "
        f"{shape(count)['users']:,} users, {shape(count)['movies']:,} movies) in "
        f"{time.perf_counter() - started:.0f} s; marked by {root / MARKER}"
    )
    if preprocess:
        preprocess_synthetic(root, typer.echo)
        typer.echo(f"SYNTHETIC processed data in {root / 'processed'}")
