"""Trained models and baselines → metrics under three protocols, plus the raw predictions and Top-10 lists
from which anyone can recompute every number. The report and the plots are made from these by
pipeline.evaluation.report and pipeline.evaluation.plots.

Outputs (under the output folder; artifacts/ for `make all`, artifacts/study/ for `make study`):
  metrics.json                       {"synthetic", "dataset"} (SYNTHETIC data says so), {"data", "models",
                                     "baselines"} of the random split, the same under "temporal" when
                                     evaluated, and "new_users" (study only)
  predictions/[temporal/]<name>.parquet   rated test rows: user_id, movie_id, rating, label, score (raw IDs)
  top10/[temporal/]<name>.parquet         full-catalogue Top-10: user_id, rank, movie_id, score (raw IDs)

Each is recorded in its manifest (pipeline.manifests): the producer is the make target that writes the folder's
metrics.json (`make evaluate` for artifacts/, `make study`, `make repro`; pipeline.evaluation.metrics_files), else
the command line that ran; predictions/ and top10/ have metrics.json as their Make target, so that a damaged one
has make evaluate again.

Every model and baseline goes through the test users config.SCORING_CHUNK_USERS at a time (their candidate
lists, rated rows and scores), so that no users × catalogue array of every user is ever made; the results do
not depend on the chunks.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from tqdm import tqdm

from pipeline import config, manifests
from pipeline.data import history, synth
from pipeline.data.history import latest_context
from pipeline.data.processed import Processed, load_processed
from pipeline.evaluation import baselines, metrics, metrics_files
from pipeline.evaluation.tables import comparison_table, metrics_table
from pipeline.files import record_timing, write_json, write_parquet
from pipeline.ranking import candidates
from pipeline.ranking.model_files import load_training_log
from pipeline.ranking.scorers import ScoreFn, load_scorer, ranked_frame, score_rows, top_n
from pipeline.retrieval import retriever


def test_users(data: Processed) -> pd.DataFrame:
    """Each test user's fields plus the context of that user's most recent training rating."""
    users = data.users[data.users["user_id"].isin(data.test["user_id"].unique())]
    # Only the columns latest_context reads: it sorts a copy of what it is given.
    latest = latest_context(data.train[["user_id", "timestamp", *config.CONTEXT_FIELDS]])
    return users.join(latest, on="user_id", how="inner")


def relevant_movies(data: Processed) -> pd.DataFrame:
    return data.test.loc[data.test["label"] == 1, ["user_id", "movie_id"]]


def test_row_scores(score_fn: ScoreFn, data: Processed, chunk_users: int = config.SCORING_CHUNK_USERS) -> np.ndarray:
    """`score_fn` over every rated test row, `chunk_users` test users at a time, in data.test's order; a model
    with history fields reads each row's from its user's training rows only (never the row's own movie)."""
    fields = getattr(score_fn, "history_fields", {})
    parts = []
    for test, train in candidates.user_chunks(data.test, chunk_users, data.train):
        histories = {
            name: history.row_histories(test, train, len(data.users), length, label)
            for name, (length, label) in fields.items()
        }
        parts.append(pd.Series(score_rows(score_fn, test, histories), index=test.index))
    return pd.concat(parts).loc[data.test.index].to_numpy()


def evaluate_scorer(
    score_fn: ScoreFn,
    data: Processed,
    users: pd.DataFrame,
    k: int = config.TOP_N,
    full_catalog: bool = True,
    chunk_users: int = config.SCORING_CHUNK_USERS,
):
    """A row scorer (a 14-field model or a baseline) under every protocol (the full-catalogue one only when
    `full_catalog`); a model with history fields reads each user's history from the training rows only.
    Returns (metrics, test predictions, full-catalogue top-k or None), in codes."""
    predictions = data.test[["user_id", "movie_id", "rating", "label"]].copy()
    predictions["score"] = test_row_scores(score_fn, data, chunk_users)
    result = {
        "reference_protocol": metrics.reference_protocol(predictions, k),
        "rated": metrics.rated_metrics(predictions, k),
    }
    if not full_catalog:
        return result, predictions, None
    user_histories = {
        name: history.user_histories(data.train, len(data.users), length, label)[users["user_id"].to_numpy()]
        for name, (length, label) in getattr(score_fn, "history_fields", {}).items()
    }
    top = top_n(
        score_fn,
        users,
        data.movies,
        exclude=data.train[["user_id", "movie_id"]],
        n=k,
        progress=True,
        histories=user_histories,
    )
    result["full_catalog"] = metrics.full_catalog_metrics(top, relevant_movies(data), k)
    return result, predictions, top


def evaluate_two_stages(
    two_stages: dict,
    data: Processed,
    k: int = config.TOP_N,
    chunk_users: int = config.SCORING_CHUNK_USERS,
    progress: bool = False,
) -> dict:
    """Two-stage recommenders ({name: TwoStage} over one retrieval model) on the full-catalogue protocol (they
    order retrieval candidates, so they have no score for an arbitrary rated row). The test users go
    `chunk_users` at a time: each chunk's candidate lists, from the users' training rows, are made once per
    list shape and ranked by every recommender of that shape. Returns {name: (metrics, None, top-k)}, in codes."""
    tops = {name: [] for name in two_stages}
    test_owners = data.test["user_id"].unique()
    bar = tqdm(total=len(test_owners), unit="user", desc="ranking", disable=not progress)
    for test, train in candidates.user_chunks(data.test, chunk_users, data.train):
        lists_of_shape = {}
        for name, two_stage in two_stages.items():
            shape = (two_stage.cfg.candidates, two_stage.cfg.history, two_stage.cfg.recent_liked)
            if shape not in lists_of_shape:
                lists = candidates.user_lists(two_stage.retrieval, train, data.users, two_stage.cfg)
                lists_of_shape[shape] = lists.take(np.isin(lists.owner, test["user_id"].unique()))
            lists = lists_of_shape[shape]
            tops[name].append(ranked_frame(lists.owner, *two_stage.top_n(lists, k)))
        bar.update(test["user_id"].nunique())
    bar.close()
    relevant = relevant_movies(data)
    results = {}
    for name, parts in tops.items():
        top = pd.concat(parts, ignore_index=True)
        results[name] = ({"full_catalog": metrics.full_catalog_metrics(top, relevant, k)}, None, top)
    return results


def evaluate_two_stage(
    two_stage, data: Processed, k: int = config.TOP_N, chunk_users: int = config.SCORING_CHUNK_USERS
):
    """One two-stage recommender on the full-catalogue protocol: (metrics, None, top-k), in codes."""
    return evaluate_two_stages({"two_stage": two_stage}, data, k, chunk_users)["two_stage"]


def baseline_score_fn(
    name: str,
    train: pd.DataFrame,
    fitted: retriever.Retriever | None = None,
    chunk_users: int = config.SCORING_CHUNK_USERS,
) -> ScoreFn:
    scorer = baselines.fit_baseline(name, train, fitted=fitted, chunk_users=chunk_users)
    return lambda inputs: scorer(inputs["user_id"], inputs["movie_id"])


def evaluate_split(
    data: Processed,
    split: str,
    names,
    models_dir: Path,
    keep,
    echo=typer.echo,
    full_catalog: bool = True,
    chunk_users: int = config.SCORING_CHUNK_USERS,
) -> dict:
    """Every model of `names` trained on `split`, and every baseline, through the same code; the 14-field
    models over the whole catalogue too when `full_catalog`. Each scorer's test predictions and top-k (or
    None) go to `keep(name, predictions, top)` as soon as it is evaluated, so that no more than one scorer's
    are held. Returns the results."""
    users = test_users(data)
    fitted = retriever.load(retriever.path(split, models_dir))
    results = {
        "data": {"train": len(data.train), "test": len(data.test), "retrieval": fitted.kind},
        "models": {},
        "baselines": {},
    }
    scorers = {name: load_scorer(name, split, models_dir, fitted, data.movies) for name in names}
    two_stages = {name: scorer for name, scorer in scorers.items() if config.MODELS[name].candidates}
    evaluated = {}
    if two_stages:
        echo(f"evaluating {', '.join(two_stages)} ({split} split), {chunk_users:,} test users at a time")
        evaluated = evaluate_two_stages(two_stages, data, chunk_users=chunk_users, progress=True)
    for name, scorer in scorers.items():
        if name not in evaluated:
            echo(f"evaluating {name} ({split} split)")
            evaluated[name] = evaluate_scorer(scorer, data, users, full_catalog=full_catalog, chunk_users=chunk_users)
        results["models"][name] = evaluated[name][0]
        keep(name, *evaluated.pop(name)[1:])
    for name in baselines.evaluated(fitted.n_movies, fitted.kind):
        echo(f"evaluating baseline {name} ({split} split)")
        score_fn = baseline_score_fn(name, data.train, fitted, chunk_users)
        result, predictions, top = evaluate_scorer(score_fn, data, users, chunk_users=chunk_users)
        results["baselines"][name] = result
        keep(name, predictions, top)
    return results


def to_raw_ids(frame: pd.DataFrame, data: Processed) -> pd.DataFrame:
    out = frame.copy()
    for field in ("user_id", "movie_id"):
        out[field] = data.encoders.decode(field, out[field]).astype("int64")
    return out


def evaluate_models(
    data: Processed,
    evaluated: dict[str, tuple[str, ...]],
    models_dir: Path,
    out_dir: Path,
    echo=typer.echo,
    full_catalog: bool = True,
    chunk_users: int = config.SCORING_CHUNK_USERS,
    producer: str | None = None,
) -> dict:
    """Evaluate `evaluated` ({split: model names}) and write predictions/ and top10/ under out_dir (metrics.json
    is the caller's); the 14-field models' whole-catalogue Top-10 only when `full_catalog`; each file recorded
    with `producer` (the command that remakes out_dir's metrics.json, their Make target; None: not recorded).
    The random split's results are the top level of the returned results (as the reference reported them);
    every other split's sit under its own name."""
    manifest = {"producer": producer, "target": out_dir / metrics_files.NAME}
    results = {}
    for split, names in evaluated.items():
        split_data = data.split(split)
        subfolder = "" if split == "random" else split

        def keep(name, predictions, top, split_data=split_data, subfolder=subfolder):
            if predictions is not None:
                write_parquet(
                    out_dir / "predictions" / subfolder / f"{name}.parquet",
                    to_raw_ids(predictions, split_data),
                    **manifest,
                )
            if top is not None:
                write_parquet(
                    out_dir / "top10" / subfolder / f"{name}.parquet", to_raw_ids(top, split_data), **manifest
                )

        split_results = evaluate_split(split_data, split, names, models_dir, keep, echo, full_catalog, chunk_users)
        for name in names:
            split_results["models"][name]["train_seconds"] = load_training_log(name, split, models_dir)["train_seconds"]
        if split == "random":
            results.update(split_results)
        else:
            results[split] = split_results
    return results


def dataset_facts(processed_dir: Path) -> dict:
    """What metrics.json says about the data it was measured on: a SYNTHETIC set (pipeline.data.synth) says so
    first, so that no number made from it passes for a MovieLens result."""
    if synth.is_synthetic(processed_dir):
        return {"synthetic": True, "dataset": f"SYNTHETIC MovieLens-format data ({processed_dir}): not MovieLens"}
    return {"synthetic": False, "dataset": "MovieLens 1M"}


EvaluationPath = config.choice("EvaluationPath", ("product", "study", "reference"))
EVALUATED = {
    "product": config.PRODUCT_MODELS,
    "study": config.STUDY_MODELS,
    "reference": {"random": config.REFERENCE_MODELS},
}
# Whether the 14-field models (reference, tuned, sampled) are also ranked over the whole catalogue: 22 M
# (user, movie) pairs per model, most of `make all`'s evaluation time, for models that do not recommend; so
# make all and make repro score them on their own test rows (the reference protocol, AUC) and make study
# adds the whole catalogue.
FULL_CATALOG = {"product": False, "study": True, "reference": False}


def producer(path: str, models: list[str], processed_dir: Path, models_dir: Path, out_dir: Path) -> str:
    """The command that remakes out_dir's metrics.json (and its predictions/ and top10/): the make target of the
    folders make evaluates into, else this evaluation's command line (the folders at their defaults left out)."""
    target = metrics_files.make_target(out_dir)
    if target:
        return target
    words = ["python", "-m", "pipeline", "evaluate", "--path", path]
    words += [word for name in models for word in ("--model", name)]
    for option, given, default in (
        ("--processed-dir", processed_dir, config.PROCESSED_DIR),
        ("--models-dir", models_dir, config.MODELS_DIR),
    ):
        words += [] if Path(given) == default else [option, str(given)]
    return shlex.join([*words, "--out-dir", str(out_dir)])


def evaluate_command(
    path: EvaluationPath = typer.Option(
        EvaluationPath.product,
        help="product: the models of `make all` on the random "
        "split; study: every model on both splits, and new users; reference: the "
        "reference models only (the reproduction CI checks).",
    ),
    model: list[config.Model] = typer.Option(
        None, "--model", help="Only this model, on the path's splits (repeatable): instead of the path's list."
    ),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out_dir: Path = typer.Option(None, help="Default: artifacts/ (product), artifacts/study/, artifacts/repro/."),
) -> None:
    """Evaluate the trained models and the baselines; write metrics.json, predictions/ and top10/."""
    started = time.perf_counter()
    out_dir = (
        out_dir
        or {"product": config.ARTIFACTS_DIR, "study": config.STUDY_DIR, "reference": config.REPRO_DIR}[path.value]
    )
    evaluated = EVALUATED[path.value]
    models = list(dict.fromkeys(name.value for name in model or ()))
    if models:
        evaluated = {split: tuple(models) for split in evaluated}
    missing = [
        f"{name} ({split})"
        for split, names in evaluated.items()
        for name in names
        if not config.model_path(name, split, models_dir).is_file()
    ]
    missing += [f"retrieval ({split})" for split in evaluated if not retriever.path(split, models_dir).is_file()]
    try:
        data = load_processed(processed_dir, splits=tuple(evaluated))
    except (FileNotFoundError, manifests.ArtifactError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if missing:
        typer.echo(
            f"error: not trained yet: {', '.join(missing)}; run `make {'study' if path.value == 'study' else 'all'}`",
            err=True,
        )
        raise typer.Exit(2)
    facts = dataset_facts(processed_dir)
    if facts["synthetic"]:
        typer.echo(facts["dataset"])
    made_by = producer(path.value, models, processed_dir, models_dir, out_dir)
    results = facts | evaluate_models(
        data, evaluated, models_dir, out_dir, full_catalog=FULL_CATALOG[path.value], producer=made_by
    )
    results["made"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # Written last: the Makefile treats metrics.json as the mark of a finished evaluation.
    write_json(out_dir / metrics_files.NAME, results, producer=made_by)
    typer.echo(metrics_table(results))
    typer.echo(comparison_table(results))
    record_timing(out_dir, f"evaluate ({path.value})", time.perf_counter() - started)
    typer.echo(
        f"evaluated in {time.perf_counter() - started:.0f} s; wrote {out_dir}/metrics.json, predictions/, top10/"
    )
