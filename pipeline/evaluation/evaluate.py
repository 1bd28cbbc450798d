"""Trained models and baselines → metrics under three protocols, plus the raw predictions and Top-10 lists
from which anyone can recompute every number. The report and the plots are made from these by
pipeline.evaluation.report and pipeline.evaluation.plots.

Outputs (under the output folder; artifacts/ for `make all`, artifacts/study/ for `make study`):
  metrics.json                       {"data", "models", "baselines"} of the random split, the same under
                                     "temporal" when evaluated, and "new_users" (study only)
  predictions/[temporal/]<name>.parquet   rated test rows: user_id, movie_id, rating, label, score (raw IDs)
  top10/[temporal/]<name>.parquet         full-catalogue Top-10: user_id, rank, movie_id, score (raw IDs)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import config
from pipeline.data import history
from pipeline.data.history import latest_context
from pipeline.data.preprocess import Processed, load_processed
from pipeline.evaluation import baselines, metrics, newcomers
from pipeline.evaluation.tables import metrics_table
from pipeline.files import record_timing, write_json, write_parquet
from pipeline.ranking import candidates
from pipeline.ranking.model_files import load_training_log
from pipeline.ranking.scorers import ScoreFn, load_scorer, ranked_frame, score_rows, top_n
from pipeline.retrieval import ease


def test_users(data: Processed) -> pd.DataFrame:
    """Each test user's fields plus the context of that user's most recent training rating."""
    users = data.users[data.users["user_id"].isin(data.test["user_id"].unique())]
    return users.join(latest_context(data.train), on="user_id", how="inner")


def relevant_movies(data: Processed) -> pd.DataFrame:
    return data.test.loc[data.test["label"] == 1, ["user_id", "movie_id"]]


def evaluate_scorer(
    score_fn: ScoreFn, data: Processed, users: pd.DataFrame, k: int = config.TOP_N, full_catalog: bool = True
):
    """A row scorer (a 14-field model or a baseline) under every protocol (the full-catalogue one only when
    `full_catalog`); a model with history fields reads each user's history from the training rows only.
    Returns (metrics, test predictions, full-catalogue top-k or None), in codes."""
    fields = getattr(score_fn, "history_fields", {})
    n_users = len(data.users)
    row_histories = {
        name: history.row_histories(data.test, data.train, n_users, length, label)
        for name, (length, label) in fields.items()
    }
    user_histories = {
        name: history.user_histories(data.train, n_users, length, label)[users["user_id"].to_numpy()]
        for name, (length, label) in fields.items()
    }
    predictions = data.test[["user_id", "movie_id", "rating", "label"]].copy()
    predictions["score"] = score_rows(score_fn, data.test, row_histories)
    result = {
        "reference_protocol": metrics.reference_protocol(predictions, k),
        "rated": metrics.rated_metrics(predictions, k),
    }
    if not full_catalog:
        return result, predictions, None
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


def test_user_lists(two_stage, data: Processed) -> candidates.CandidateLists:
    """Every test user's candidate lists, from their training rows."""
    lists = candidates.user_lists(two_stage.retrieval, data.train, data.users, two_stage.cfg)
    return lists.take(np.isin(lists.owner, data.test["user_id"].unique()))


def evaluate_two_stage(two_stage, data: Processed, k: int = config.TOP_N, lists=None):
    """A two-stage recommender on the full-catalogue protocol (it orders retrieval candidates, so it has
    no score for an arbitrary rated row), over `lists` (test_user_lists, made here when None). Returns
    (metrics, None, top-k), in codes."""
    lists = test_user_lists(two_stage, data) if lists is None else lists
    movies, scores = two_stage.top_n(lists, k, progress=True)
    top = ranked_frame(lists.owner, movies, scores)
    return {"full_catalog": metrics.full_catalog_metrics(top, relevant_movies(data), k)}, None, top


def baseline_score_fn(name: str, train: pd.DataFrame, fitted: ease.Retrieval | None = None) -> ScoreFn:
    scorer = baselines.fit_baseline(name, train, fitted=fitted)
    return lambda inputs: scorer(inputs["user_id"], inputs["movie_id"])


def evaluate_split(data: Processed, split: str, names, models_dir: Path, echo=typer.echo, full_catalog: bool = True):
    """Every model of `names` trained on `split`, and every baseline, through the same code; the 14-field
    models over the whole catalogue too when `full_catalog`. Returns (results, {name: (predictions, top)})."""
    users = test_users(data)
    fitted = ease.load(ease.path(split, models_dir))
    results = {"data": {"train": len(data.train), "test": len(data.test)}, "models": {}, "baselines": {}}
    outputs, lists_of_shape = {}, {}  # rankers of one list shape share the test users' lists
    for name in names:
        echo(f"evaluating {name} ({split} split)")
        scorer = load_scorer(name, split, models_dir, fitted, data.movies)
        if config.MODELS[name].candidates:
            shape = (scorer.cfg.candidates, scorer.cfg.history, scorer.cfg.recent_liked)
            if shape not in lists_of_shape:
                lists_of_shape[shape] = test_user_lists(scorer, data)
            evaluated = evaluate_two_stage(scorer, data, lists=lists_of_shape[shape])
        else:
            evaluated = evaluate_scorer(scorer, data, users, full_catalog=full_catalog)
        results["models"][name], outputs[name] = evaluated[0], evaluated[1:]
    for name in baselines.BASELINES:
        echo(f"evaluating baseline {name} ({split} split)")
        evaluated = evaluate_scorer(baseline_score_fn(name, data.train, fitted), data, users)
        results["baselines"][name], outputs[name] = evaluated[0], evaluated[1:]
    return results, outputs


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
) -> dict:
    """Evaluate `evaluated` ({split: model names}) and write metrics.json, predictions/ and top10/ under
    out_dir; the 14-field models' whole-catalogue Top-10 only when `full_catalog`. The random split's results
    are the top level of metrics.json (as the reference reported them); every other split's sit under its own
    name. Returns the results."""
    results = {}
    for split, names in evaluated.items():
        split_data = data.split(split)
        split_results, outputs = evaluate_split(split_data, split, names, models_dir, echo, full_catalog)
        for name in names:
            split_results["models"][name]["train_seconds"] = load_training_log(name, split, models_dir)["train_seconds"]
        subfolder = "" if split == "random" else split
        for name, (predictions, top) in outputs.items():
            if predictions is not None:
                write_parquet(
                    out_dir / "predictions" / subfolder / f"{name}.parquet", to_raw_ids(predictions, split_data)
                )
            if top is not None:
                write_parquet(out_dir / "top10" / subfolder / f"{name}.parquet", to_raw_ids(top, split_data))
        if split == "random":
            results.update(split_results)
        else:
            results[split] = split_results
    return results


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


def evaluate_command(
    path: EvaluationPath = typer.Option(
        EvaluationPath.product,
        help="product: the models of `make all` on the random "
        "split; study: every model on both splits, and new users; reference: the "
        "reference models only (the reproduction CI checks).",
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
    missing = [
        f"{name} ({split})"
        for split, names in evaluated.items()
        for name in names
        if not config.model_path(name, split, models_dir).is_file()
    ]
    missing += [f"retrieval ({split})" for split in evaluated if not ease.path(split, models_dir).is_file()]
    try:
        data = load_processed(processed_dir)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if missing:
        typer.echo(
            f"error: not trained yet: {', '.join(missing)}; run `make {'study' if path.value == 'study' else 'all'}`",
            err=True,
        )
        raise typer.Exit(2)
    results = evaluate_models(data, evaluated, models_dir, out_dir, full_catalog=FULL_CATALOG[path.value])
    if path.value == "study":
        results["new_users"] = newcomers.evaluate_new_users(data, echo=typer.echo)
    results["made"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # Written last: the Makefile treats metrics.json as the mark of a finished evaluation.
    write_json(out_dir / "metrics.json", results)
    typer.echo(metrics_table(results))
    record_timing(out_dir, f"evaluate ({path.value})", time.perf_counter() - started)
    typer.echo(
        f"evaluated in {time.perf_counter() - started:.0f} s; wrote {out_dir}/metrics.json, predictions/, top10/"
    )
