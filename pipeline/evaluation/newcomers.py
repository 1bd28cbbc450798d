"""How well the recommender serves people it has never seen: the newcomer curve (`make newcomers`, in `make study`).

Two shares of users are held out of every stage's training (retrieval and ranker): the test newcomers, whom the
curve reports on, and the validation newcomers, on whom the popularity weight of a new person's list is chosen
(config.NEWCOMER_LISTS). Each held-out user is given only their first k liked movies by time, as a newcomer
would name them, in the context of the last of those ratings, for each k of config_evaluation.NEWCOMERS["given"]; their
later liked movies are what a Top-10 should find, and only the k given movies are excluded. Only users with more
liked movies than the largest k take part, so every point of the curve is the same people.

Scorers at each k: most popular (liked training ratings), EASE from the k movies (the retrieval stage alone), the
two-stage ranker from the k movies without and with gender, age and occupation, and the recommender as it serves a
new person (the ranker's order blended with popularity and retrieval's score by config.NEWCOMER_LISTS, with
demographics).

Outputs: artifacts/models/newcomers/ (the retrieval model and the ranker trained without the held-out users, so a
rerun of the curve does not retrain) and artifacts/study/newcomers.json, which the report draws.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config, config_evaluation, manifests
from pipeline.data.processed import Processed
from pipeline.evaluation import metrics
from pipeline.files import record_timing, write_json
from pipeline.ranking import candidates, model_files, newcomer_lists, ranker_inputs, scorers
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.retrieval import retriever
from pipeline.training import ranker

SPLIT = "newcomers"  # the models' folder under artifacts/models/ (config.model_path)


@dataclasses.dataclass(frozen=True)
class Newcomers:
    """Held-out users (codes) each given their first k liked movies (codes, oldest first), the rating-time
    context of the k-th (codes, not shifted), and their later liked movies (user_id, movie_id)."""

    users: np.ndarray
    given: list[np.ndarray]
    context: np.ndarray
    relevant: pd.DataFrame


def held_out_users(n_users: int, sizes=config_evaluation.NEWCOMERS) -> tuple[np.ndarray, np.ndarray]:
    """(test users, validation users): disjoint random shares of all user codes, sorted."""
    rng = np.random.default_rng(sizes["seed"])
    order = rng.permutation(n_users)
    n_test, n_validation = (int(round(sizes[share] * n_users)) for share in ("test_share", "validation_share"))
    return np.sort(order[:n_test]), np.sort(order[n_test : n_test + n_validation])


def training_rows(data: Processed, held_out: np.ndarray) -> pd.DataFrame:
    """The training rows of every user who is not held out."""
    return data.train[~data.train["user_id"].isin(held_out)].reset_index(drop=True)


def liked_in_order(data: Processed, users: np.ndarray) -> pd.DataFrame:
    """Every liked rating (training and test rows) of `users`, each user's oldest first, with its position."""
    ratings = pd.concat([data.train, data.test], ignore_index=True)
    liked = ratings[ratings["user_id"].isin(users) & (ratings["label"] == 1)]
    liked = liked.sort_values(["user_id", "timestamp", "movie_id"], kind="stable").reset_index(drop=True)
    return liked.assign(position=liked.groupby("user_id").cumcount().to_numpy())


def given_first(liked: pd.DataFrame, k: int, most: int) -> Newcomers:
    """The users of `liked` (liked_in_order) with more than `most` liked movies, each given their first k."""
    counts = liked.groupby("user_id").size()
    users = np.sort(counts.index[counts > most].to_numpy())
    mine = liked[liked["user_id"].isin(users)]
    first, rest = mine[mine["position"] < k], mine[mine["position"] >= k]
    return Newcomers(
        users=users,
        given=[group["movie_id"].to_numpy() for _, group in first.groupby("user_id", sort=True)],
        context=first.groupby("user_id", sort=True).tail(1)[list(config.CONTEXT_FIELDS)].to_numpy(),
        relevant=rest[["user_id", "movie_id"]],
    )


def profiles(data: Processed, users: np.ndarray, demographics: bool) -> np.ndarray:
    """The ranker's user fields of newcomers: user_id and zip unknown (0); gender, age and occupation their own
    (shifted) when `demographics`, else unknown too."""
    table = data.users.set_index("user_id").loc[users]
    out = np.zeros((len(users), len(config.USER_FIELDS)), dtype=np.int64)
    if demographics:
        for field in ("gender", "age", "occupation"):
            out[:, config.USER_FIELDS.index(field)] = table[field].to_numpy() + 1
    return out


def top_frame(users: np.ndarray, movies: np.ndarray) -> pd.DataFrame:
    k = movies.shape[1]
    return pd.DataFrame(
        {"user_id": np.repeat(users, k), "rank": np.tile(np.arange(1, k + 1), len(users)), "movie_id": movies.ravel()}
    )


def popular_top(counts: np.ndarray, given: list[np.ndarray], n: int) -> np.ndarray:
    """The n most liked movies (`counts` by movie code) that each person was not given."""
    order = np.argsort(-counts, kind="stable")
    return np.stack([order[~np.isin(order, mine)][:n] for mine in given])


def score_all(tops: dict[str, np.ndarray], newcomers: Newcomers, n: int) -> dict[str, dict]:
    return {
        name: metrics.full_catalog_metrics(top_frame(newcomers.users, movies), newcomers.relevant, n)
        for name, movies in tops.items()
    }


def setting_key(popular: int, weight: float, retrieval: float) -> str:
    return f"popular {popular}, weight {weight:g}, retrieval {retrieval:g}"


def baseline_tops(retrieval, popularity: newcomer_lists.Popularity, newcomers: Newcomers, n: int) -> dict:
    """Most popular's and EASE's (from the given movies) n best movies of each newcomer."""
    rows = candidates.people_matrix(newcomers.given, retrieval.n_movies)
    return {
        "most_popular": popular_top(popularity.likes[0, 0], newcomers.given, n),
        "ease": retrieval.top_k(rows, rows, n)[0],
    }


def worst_ratio(figures: dict, baselines: dict, n: int) -> float:
    """The smaller of Recall@n and NDCG@n over the better baseline's: what the target (≥ 1.03 × at each k) asks."""
    return min(
        figures[metric] / max(max(baseline[metric] for baseline in baselines.values()), 1e-12)
        for metric in (f"recall@{n}", f"ndcg@{n}")
    )


def choose_lists(
    two_stage: scorers.TwoStage,
    data: Processed,
    liked: pd.DataFrame,
    popularity: newcomer_lists.Popularity,
    n: int,
    echo,
) -> tuple[dict[int, dict], dict]:
    """config.NEWCOMER_LISTS as the validation newcomers of `liked` would have it: for each k of
    config_evaluation.NEWCOMERS["given"], the (popular, weight, retrieval) setting of the grid whose lists are
    furthest above the better of most popular and EASE in both Recall@n and NDCG@n (worst_ratio; with
    demographics, as the page and the service get them), and the validation figures of the baselines and of
    every setting."""
    given, most = config_evaluation.NEWCOMERS["given"], max(config_evaluation.NEWCOMERS["given"])
    chosen, figures = {}, {}
    for k in given:
        newcomers = given_first(liked, k, most)
        profile = profiles(data, newcomers.users, demographics=True)
        baselines = score_all(baseline_tops(two_stage.retrieval, popularity, newcomers, n), newcomers, n)
        tops, grid = {}, {}
        for popular in config_evaluation.NEWCOMERS["popular"]:
            counts = np.full(len(newcomers.users), popular)
            lists, prior_at = newcomer_lists.candidate_lists(
                two_stage, popularity, newcomers.given, profile, newcomers.context + 1, counts
            )
            ranker_scores = two_stage.scorer(lists, two_stage.movies)
            for weight in config_evaluation.NEWCOMERS["weights"]:
                for retrieval in config_evaluation.NEWCOMERS["retrieval_weights"]:
                    key = setting_key(popular, weight, retrieval)
                    blended = newcomer_lists.blended(ranker_scores, prior_at, weight, lists.scores, retrieval)
                    tops[key] = newcomer_lists.best(lists, blended, n)[0]
                    grid[key] = {"popular": popular, "weight": weight, "retrieval": retrieval}
        settings = score_all(tops, newcomers, n)
        key = max(settings, key=lambda name: worst_ratio(settings[name], baselines, n))
        figures[str(k)] = {"baselines": baselines, "settings": settings, "chosen": key}
        chosen[k] = grid[key]
        echo(
            f"validation, {k} given: {key}: Recall@{n} {settings[key][f'recall@{n}']:.4f}, NDCG@{n} "
            f"{settings[key][f'ndcg@{n}']:.4f}, {worst_ratio(settings[key], baselines, n):.3f} × the better "
            "baseline in both"
        )
    return chosen, figures


def curve(
    two_stage: scorers.TwoStage,
    data: Processed,
    liked: pd.DataFrame,
    popularity: newcomer_lists.Popularity,
    table: dict[int, dict],
    n: int,
) -> dict[str, dict]:
    """{k: {scorer: metrics}} on the newcomers of `liked` for each k of config_evaluation.NEWCOMERS["given"]."""
    given, most = config_evaluation.NEWCOMERS["given"], max(config_evaluation.NEWCOMERS["given"])
    name = config.model_name(config.DEFAULT_ARCHITECTURE)
    out = {}
    for k in given:
        newcomers = given_first(liked, k, most)
        with_demographics = profiles(data, newcomers.users, demographics=True)
        tops = baseline_tops(two_stage.retrieval, popularity, newcomers, n) | {
            "group_popular": np.stack(
                newcomer_lists.popular_unseen(
                    popularity.prior(with_demographics), newcomers.given, np.full(len(newcomers.users), n)
                )
            ),
        }
        for demographics, suffix in ((False, "liked movies only"), (True, "+ gender, age, occupation")):
            lists = candidates.person_lists(
                two_stage.retrieval,
                newcomers.given,
                profiles(data, newcomers.users, demographics),
                newcomers.context + 1,
                two_stage.cfg,
            )
            tops[f"{name}, {suffix}"] = scorers.ranked(lists, two_stage.scorer(lists, two_stage.movies), n)[0]
        tops["served"] = newcomer_lists.top_n(
            two_stage, popularity, newcomers.given, with_demographics, newcomers.context + 1, n, table
        )[0]
        out[str(k)] = score_all(tops, newcomers, n) | {"users": len(newcomers.users)}
    return out


def trained_with(data: Processed, train: pd.DataFrame) -> dict:
    """What decides the newcomers' models: the ranker's and retrieval's settings and the rows they are fitted on."""
    return {
        "ranker": dataclasses.asdict(config.MODELS[config.model_name(config.DEFAULT_ARCHITECTURE)]),
        "retrieval": retriever.settings(len(data.movies)),
        "held_out": {name: config_evaluation.NEWCOMERS[name] for name in ("test_share", "validation_share", "seed")},
        "training_rows": len(train),
        "users": len(data.users),
    }


def stored_models(folder: Path, settings: dict, name: str, cfg) -> scorers.TwoStage | None:
    """The models trained in `folder` with `settings`, or None when there are none, they were trained otherwise,
    or a file is damaged (then they are trained again)."""
    marker = folder / "trained_with.json"
    try:
        with manifests.checked(marker, "make newcomers"):
            if not marker.is_file() or json.loads(marker.read_text()) != json.loads(json.dumps(settings)):
                return None
        fitted = retriever.load(folder / "retrieval.npz")
        model = model_files.load_keras(folder / f"{name}.keras")
    except (manifests.ArtifactError, OSError, ValueError):
        return None
    return scorers.TwoStage(fitted, scorers.ListScorer(KerasRuntime(model), cfg), None)


def trained_models(data: Processed, train: pd.DataFrame, models_dir: Path, echo) -> scorers.TwoStage:
    """The retrieval model and the default ranker fitted on `train` (the users not held out): those in
    models_dir/newcomers/ when they were trained with today's settings on these rows, else fitted and saved there
    (trained_with.json, written last, says with what)."""
    name = config.model_name(config.DEFAULT_ARCHITECTURE)
    cfg = config.MODELS[name]
    folder = retriever.path(SPLIT, models_dir).parent
    settings = trained_with(data, train)
    stored = stored_models(folder, settings, name, cfg)
    if stored is not None:
        return dataclasses.replace(stored, movies=ranker_inputs.movie_table(data.movies))
    echo(f"newcomers: training retrieval and {name} on the {len(train):,} training rows of the other users")
    fitted = retriever.fit(train, len(data.users), len(data.movies))
    retriever.save(fitted, folder / "retrieval.npz")
    model, log = ranker.train_ranker(dataclasses.replace(data, train=train), cfg, log=echo)
    model_files.save_keras(model, folder / f"{name}.keras", producer="make newcomers")
    write_json(folder / f"{name}.training_log.json", log, producer="make newcomers")
    write_json(folder / "trained_with.json", settings, producer="make newcomers")
    return scorers.TwoStage(
        fitted, scorers.ListScorer(KerasRuntime(model), cfg), ranker_inputs.movie_table(data.movies)
    )


def evaluate_newcomers(data: Processed, models_dir: Path, n: int = config.TOP_N, echo=print) -> dict:
    """The newcomer curve (module docstring) with the validation figures behind config.NEWCOMER_LISTS."""
    test_users, validation_users = held_out_users(len(data.users))
    train = training_rows(data, np.concatenate([test_users, validation_users]))
    two_stage = trained_models(data, train, models_dir, echo)
    popularity = newcomer_lists.Popularity.of(train[train["label"] == 1], data.users, len(data.movies))
    chosen, validation = choose_lists(two_stage, data, liked_in_order(data, validation_users), popularity, n, echo)
    served = {int(k): dict(entry) for k, entry in config.NEWCOMER_LISTS.items()}
    return {
        "given": list(config_evaluation.NEWCOMERS["given"]),
        "test_users": len(test_users),
        "validation_users": len(validation_users),
        "training_rows": len(train),
        "baselines": ["most_popular", "ease"],
        "chosen_on_validation": {str(k): entry for k, entry in chosen.items()},
        "served": {str(k): entry for k, entry in served.items()},
        "validation": validation,
        "test": curve(two_stage, data, liked_in_order(data, test_users), popularity, served, n),
    }


def newcomers_command(
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out_dir: Path = typer.Option(config.STUDY_DIR),
) -> None:
    """The newcomer curve: held-out users given their first 1, 3, 5, 10 liked movies → study/newcomers.json."""
    from pipeline.evaluation.evaluate import load_processed

    started = time.perf_counter()
    try:
        data = load_processed(processed_dir, splits=("random",))
    except (FileNotFoundError, manifests.ArtifactError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    results = evaluate_newcomers(data, models_dir, echo=typer.echo)
    write_json(out_dir / "newcomers.json", results, producer="make newcomers")
    typer.echo(curve_table(results))
    record_timing(out_dir.parent, "newcomers", time.perf_counter() - started)
    typer.echo(f"newcomers in {time.perf_counter() - started:.0f} s; wrote {out_dir / 'newcomers.json'}")


def curve_table(results: dict, n: int = config.TOP_N) -> str:
    """The test curve as a plain table: one row per (k, scorer)."""
    lines = [f"{'given':>5}  {'scorer':<48} {'Recall@' + str(n):>10} {'NDCG@' + str(n):>9}"]
    for k, scorers_at in results["test"].items():
        for name, values in scorers_at.items():
            if name != "users":
                lines.append(f"{k:>5}  {name:<48} {values[f'recall@{n}']:>10.4f} {values[f'ndcg@{n}']:>9.4f}")
    return "\n".join(lines)
