"""`make bench-litert`: the served models' LiteRT files against their .keras files → artifacts/litert_bench.json.

  same Top-10     the float32 LiteRT files and the Keras models give every user the same Top-10 (the two-stage
                  models, every user; the reference models, LITERT_BENCH["reference_users"] users over the whole
                  catalogue) and the same Top-10 for LITERT_BENCH["liked_lists"] random liked lists (config_serving.py)
  quantization    per variant (float32, dynamic-range int8, float16) and for Keras: file size, the time to score
                  one list (100 candidates; one user's catalogue for a reference model), warm median, and, for the
                  two-stage models, Recall@10 / NDCG@10 on the random split's test users (full catalogue)

config_serving.LITERT["served_variant"] is float32 unless a quantized variant is within 0.001 of it on both metrics and
faster; the JSON says whether one is.
"""

from __future__ import annotations

import os
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import typer
from tqdm import tqdm

from pipeline import config, config_serving
from pipeline.data.processed import load_processed
from pipeline.evaluation.evaluate import evaluate_two_stages
from pipeline.files import write_json
from pipeline.ranking import scorers
from pipeline.serving.errors import RecommendError
from pipeline.serving.recommender import Recommender
from pipeline.serving.terminal import fail

RUNTIME_VARIANTS = (("keras", "float32"), *(("litert", variant) for variant in config_serving.LITERT["variants"]))


def label(runtime: str, variant: str) -> str:
    return "keras" if runtime == "keras" else f"litert {variant}"


def median_ms(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 3)


def same_top10(processed_dir: Path, models_dir: Path, liked_lists: int, reference_users: int, seed: int) -> dict:
    """Whether the float32 LiteRT files rank as the Keras models: every user's Top-10 (two-stage), a sample's
    (reference), and random liked lists (two-stage); the largest score difference seen."""
    recs = {runtime: Recommender.load(processed_dir, models_dir, runtime=runtime) for runtime in ("litert", "keras")}
    out, largest = {}, 0.0
    for name in config.TWO_STAGE_MODELS:
        equal = users = 0
        chunks = zip(recs["litert"].every_users_top([name], 10), recs["keras"].every_users_top([name], 10))
        for lite, keras in tqdm(chunks, desc=f"every user, {name}", unit="chunk"):
            got, want = lite[name], keras[name]
            for (_, mine), (_, theirs) in zip(got.groupby("user_id"), want.groupby("user_id")):
                equal += mine["movie_id"].tolist() == theirs["movie_id"].tolist()
                users += 1
            largest = max(largest, float(np.abs(got["score"].to_numpy() - want["score"].to_numpy()).max()))
        out[f"{name}: every user"] = {"users": users, "same_top10": equal}
    rng = np.random.default_rng(seed)
    user_ids = recs["keras"].encoders.classes["user_id"]
    for name in config.REFERENCE_MODELS:
        picked = rng.choice(user_ids, size=min(reference_users, len(user_ids)), replace=False)
        equal = sum(
            recs["litert"].top_for_user(name, int(user))["movie_id"].tolist()
            == recs["keras"].top_for_user(name, int(user))["movie_id"].tolist()
            for user in tqdm(picked, desc=f"users, {name}", unit="user")
        )
        out[f"{name}: sampled users"] = {"users": len(picked), "same_top10": int(equal)}
    movie_ids = recs["keras"].movies_by_likes()["movie_id"].to_numpy()[:1000]
    people = [rng.choice(movie_ids, size=int(rng.integers(1, 11)), replace=False).tolist() for _ in range(liked_lists)]
    for name in config.TWO_STAGE_MODELS:
        equal = sum(
            recs["litert"].top_for_liked(name, liked)["movie_id"].tolist()
            == recs["keras"].top_for_liked(name, liked)["movie_id"].tolist()
            for liked in people
        )
        out[f"{name}: random liked lists"] = {"lists": len(people), "same_top10": int(equal)}
    return {"checks": out, "largest_score_difference": largest}


def quantization(processed_dir: Path, models_dir: Path, repeats: int) -> dict:
    """File size, scoring time and (two-stage) Recall@10 / NDCG@10 of each runtime and variant, per served model."""
    data = load_processed(processed_dir).split("random")
    rec = Recommender.load(processed_dir, models_dir, runtime="keras")
    fitted = rec.retrieval()
    user = int(rec.encoders.classes["user_id"][0])
    code = rec.user_code(user)
    out = {}
    for name in config.models_of(*config.SERVED_MODES):
        two_stage = bool(config.MODELS[name].candidates)
        keras = rec.scorer(name)
        when = rec.context_codes(*rec.context(user))
        lists = rec.user_list(keras, code, when) if two_stage else None
        users = rec.users[rec.users["user_id"] == code].assign(**when)
        rated = rec.user_ratings(code)[["user_id", "movie_id"]]
        figures = {}
        for runtime, variant in RUNTIME_VARIANTS:
            scorer = scorers.load_scorer(name, "random", models_dir, fitted, data.movies, runtime, variant)
            if runtime == "keras":
                path = config.model_path(name, "random", models_dir)
            else:
                path = config.litert_path(name, "random", models_dir, variant)
            if two_stage:
                score_once = partial(scorer.scorer, lists, scorer.movies)
            else:
                score_once = partial(scorers.top_n, scorer, users, rec.movies, rated)
            entry = {"file_bytes": path.stat().st_size, "score_one_ms": median_ms(score_once, repeats)}
            if two_stage:
                result = evaluate_two_stages({name: scorer}, data, progress=True)[name][0]["full_catalog"]
                entry |= {"recall_at_10": round(result["recall@10"], 4), "ndcg_at_10": round(result["ndcg@10"], 4)}
            figures[label(runtime, variant)] = entry
        out[name] = figures
    return out


def quantized_worth_serving(figures: dict) -> dict:
    """Per two-stage model: the quantized variants within 0.001 of float32 on both metrics and faster."""
    out = {}
    for name, variants in figures.items():
        base = variants["litert float32"]
        if "recall_at_10" not in base:
            continue
        out[name] = [
            variant
            for variant in config_serving.LITERT["variants"][1:]
            if abs(variants[f"litert {variant}"]["recall_at_10"] - base["recall_at_10"]) <= 0.001
            and abs(variants[f"litert {variant}"]["ndcg_at_10"] - base["ndcg_at_10"]) <= 0.001
            and variants[f"litert {variant}"]["score_one_ms"] < base["score_one_ms"]
        ]
    return out


def bench_litert_command(
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    models_dir: Path = typer.Option(config.MODELS_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "litert_bench.json"),
    repeats: int = typer.Option(config_serving.LITERT_BENCH["repeats"], min=1),
) -> None:
    """Compare the LiteRT files (float32, int8, float16) with the Keras models: same Top-10, size, speed, metrics."""
    load_before = os.getloadavg()
    try:
        settings = config_serving.LITERT_BENCH
        same = same_top10(
            processed_dir, models_dir, settings["liked_lists"], settings["reference_users"], settings["seed"]
        )
        figures = quantization(processed_dir, models_dir, repeats)
    except RecommendError as error:
        fail(error)
    report = {
        "what": "make bench-litert (pipeline/bench/litert_bench.py)",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "same_top10": same,
        "variants": figures,
        "quantized_worth_serving": quantized_worth_serving(figures),
        "served_variant": config_serving.LITERT["served_variant"],
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    write_json(out, report, producer="make bench-litert")
    for check, result in same["checks"].items():
        typer.echo(f"{check}: {result}")
    for name, variants in figures.items():
        for variant, entry in variants.items():
            typer.echo(f"{name} {variant}: {entry}")
    typer.echo(f"wrote {out}")
