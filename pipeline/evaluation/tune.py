"""Hyper-parameter search on a validation split carved from the training rows only.

The test rows are never read here. Each candidate is trained epoch by epoch and scored after every
epoch under the same protocols as `evaluate` (a two-stage candidate under the full-catalogue protocol,
where its retrieval stage is fitted on the carve's training rows), so the number of epochs is tuned
without retraining. Output: artifacts/tuning.json, per validation carve its size, the baselines'
scores and one record per candidate × epoch; recorded in its manifest with `make tune` as its producer
(pipeline.manifests) and checked against it before a run with --only merges into it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import typer

from pipeline import config, config_evaluation, manifests, quiet_imports
from pipeline.config import TrainConfig
from pipeline.data.processed import Processed, load_processed
from pipeline.data.splits import split_temporal
from pipeline.evaluation import evaluate
from pipeline.evaluation.report import describe
from pipeline.files import write_json
from pipeline.ranking import architecture, ranker_inputs, scorers
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.ranking.scorers import ModelScorer
from pipeline.retrieval import retriever
from pipeline.training import ranker
from pipeline.training.sampling import epoch_rows
from pipeline.training.train import fit_arguments

VALIDATION_SHARE = config_evaluation.TUNE["validation_share"]
# How validation rows are carved from a split's training rows, mirroring the two test splits:
#   random    a random 10 % of the random split's training rows;
#   temporal  each user's latest 10 % of the temporal split's training rows.
CARVES = config.SPLITS
REBUILD = "make tune"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One setting to try on a validation carve, scored on `users` validation users (0: all of them)."""

    carve: str
    cfg: TrainConfig
    users: int = config_evaluation.TUNE["users"]

    @property
    def part(self) -> str:
        """Its section of tuning.json: the carve, and "all users" when every validation user scores it."""
        return self.carve if self.users else f"{self.carve} (all users)"


def carve_validation(data: Processed, users_sample: int, seed: int = 0, carve: str = "random") -> Processed:
    """The training rows of split `carve`, less validation rows (see CARVES) kept for `users_sample` users
    (0: every user with validation rows)."""
    rng = np.random.default_rng(seed)
    if carve == "random":
        is_val = rng.random(len(data.train)) < VALIDATION_SHARE
        fit, val = data.train[~is_val].reset_index(drop=True), data.train[is_val]
    elif carve == "temporal":
        data = data.split("temporal")
        fit, val = split_temporal(data.train, VALIDATION_SHARE)
    else:
        raise ValueError(f"unknown carve {carve!r}; expected one of {', '.join(CARVES)}")
    users = val["user_id"].unique()
    chosen = rng.choice(users, size=min(users_sample or len(users), len(users)), replace=False)
    val = val[val["user_id"].isin(chosen)].reset_index(drop=True)
    return dataclasses.replace(data, train=fit, test=val)


def record_of(cfg: TrainConfig, epoch: int, seconds: float, result: dict) -> dict:
    return {
        "config": dataclasses.asdict(cfg),
        "epoch": epoch + 1,
        "train_seconds": round(seconds, 1),
        **{
            f"{protocol}/{name}": value
            for protocol, metrics in result.items()
            for name, value in metrics.items()
            if name != "users"
        },
    }


def run_two_stage_candidate(cfg: TrainConfig, tuning: Processed, progress=print) -> list[dict]:
    """Train a two-stage ranker on the carve's training rows (its own out-of-fold lists), scoring it after each
    epoch over retrieval fitted on those rows; one record per epoch."""
    fitted = retriever.fit(tuning.train, len(tuning.users), len(tuning.movies))
    movies = ranker_inputs.movie_table(tuning.movies)
    records = []

    def score(epoch, model, seconds):
        two_stage = scorers.TwoStage(fitted, scorers.ListScorer(KerasRuntime(model), cfg), movies)
        result, _, _ = evaluate.evaluate_two_stage(two_stage, tuning)
        records.append(record_of(cfg, epoch, seconds, result))
        progress(summary_line(records[-1]))

    ranker.train_ranker(tuning, cfg, log=progress, on_epoch=score)
    return records


def run_candidate(cfg: TrainConfig, tuning: Processed, field_dims: dict[str, int], progress=print) -> list[dict]:
    """Train `cfg` for cfg.epochs, validating after each epoch; one record per epoch."""

    if cfg.candidates:
        return run_two_stage_candidate(cfg, tuning, progress)
    tf = quiet_imports.tensorflow()
    tf.keras.utils.set_random_seed(cfg.seed)
    model = architecture.build_model(field_dims, cfg)
    users = evaluate.test_users(tuning)
    records, seconds = [], 0.0
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        if epoch == 0 or cfg.fresh_negatives:
            arguments = fit_arguments(
                epoch_rows(tuning.train, cfg, tuning.movies, epoch),
                cfg,
                ratings=tuning.train,
                n_users=field_dims["user_id"],
            )
        model.fit(**arguments, epochs=epoch + 1, initial_epoch=epoch, shuffle=True, verbose=0)
        seconds += time.perf_counter() - started
        result, _, _ = evaluate.evaluate_scorer(ModelScorer(KerasRuntime(model), cfg), tuning, users)
        records.append(record_of(cfg, epoch, seconds, result))
        progress(summary_line(records[-1]))
    return records


def summary_line(record: dict) -> str:
    def value(key: str) -> str:
        return "–" if record.get(key) is None else f"{record[key]:.4f}"

    return (
        f"{describe(record['config'])}; epoch {record['epoch']} | "
        f"reference ndcg {value('reference_protocol/ndcg@10')} auc {value('rated/auc')} | full recall "
        f"{value('full_catalog/recall@10')} ndcg {value('full_catalog/ndcg@10')} hr {value('full_catalog/hr@10')} "
        f"| {record['train_seconds']} s"
    )


def baseline_records(tuning: Processed) -> list[dict]:
    users = evaluate.test_users(tuning)
    records = []
    for name in ("most_popular", "positive_rate", "ease", "als"):
        result, _, _ = evaluate.evaluate_scorer(evaluate.baseline_score_fn(name, tuning.train), tuning, users)
        records.append(
            {
                "baseline": name,
                **{
                    f"{protocol}/{metric}": value
                    for protocol, metrics in result.items()
                    for metric, value in metrics.items()
                    if metric != "users"
                },
            }
        )
    return records


def search_space() -> list[Candidate]:
    """The candidates tried, in the order they were tried (see README, "Choosing the settings").

    Reference-task candidates (rated rows only: AUC and the reference protocol) use the random carve.
    Sampled-negative candidates use the temporal carve, the harder of the two test splits for beating
    popularity. Two-stage candidates use both, scored by every validation user. Each two-stage candidate
    is trained one epoch longer than its model so the curve shows where it turns.
    `make tune ONLY=<i>` reruns candidate i.
    """
    base = config.MODELS
    reference_task = dataclasses.replace(base["autoint_mlp"], learning_rate=1e-3, epochs=8)
    sampled = dataclasses.replace(base["autoint_mlp_sampled"], epochs=6)
    tuned_mlp = dataclasses.replace(base["autoint_mlp_tuned"], epochs=8)
    tuned_autoint = dataclasses.replace(base["autoint_tuned"], epochs=9)
    two_stage_mlp = dataclasses.replace(base["autoint_mlp_two_stage"], epochs=3)
    two_stage_autoint = dataclasses.replace(base["autoint_two_stage"], epochs=3)
    return [
        Candidate("random", reference_task),
        Candidate("random", dataclasses.replace(base["autoint"], learning_rate=1e-3, epochs=8)),
        Candidate("random", dataclasses.replace(reference_task, learning_rate=2e-3, lr_decay=0.7)),
        Candidate("temporal", sampled),
        Candidate("temporal", dataclasses.replace(sampled, target="graded")),
        Candidate("temporal", dataclasses.replace(sampled, learning_rate=2e-3, lr_decay=0.6)),
        Candidate("random", dataclasses.replace(reference_task, batch_size=512, epochs=5)),
        Candidate("random", dataclasses.replace(reference_task, dnn_hidden_units=(128, 64))),
        Candidate("temporal", dataclasses.replace(sampled, negatives=6, epochs=4)),
        Candidate("random", dataclasses.replace(reference_task, l2_reg_embedding=1e-4, epochs=10)),
        Candidate("temporal", dataclasses.replace(sampled, dnn_hidden_units=(128, 64), dnn_dropout=0.2)),
        Candidate("temporal", dataclasses.replace(sampled, ema_momentum=0.999)),
        Candidate(
            "random", dataclasses.replace(reference_task, dnn_hidden_units=(128, 64), l2_reg_embedding=1e-4, epochs=10)
        ),
        Candidate("random", dataclasses.replace(reference_task, dnn_hidden_units=(256, 128))),
        Candidate("random", dataclasses.replace(base["autoint"], learning_rate=1e-3, l2_reg_embedding=1e-4, epochs=10)),
        Candidate("temporal", dataclasses.replace(sampled, recency_weight=2.0)),
        Candidate("random", dataclasses.replace(base["autoint"], learning_rate=1e-3, embedding_dim=32, epochs=8)),
        Candidate("random", dataclasses.replace(reference_task, dnn_hidden_units=(512, 256))),
        Candidate("temporal", dataclasses.replace(sampled, negative_sampler="popularity", epochs=4)),
        Candidate("temporal", dataclasses.replace(sampled, negatives_per="user")),
        # 20-: the reference task with the liked (and disliked) history field.
        Candidate("random", dataclasses.replace(tuned_mlp, disliked_history=0)),
        Candidate("random", tuned_mlp),
        Candidate("random", tuned_autoint),
        # 23-: the two-stage rankers, scored by every validation user (differences are a few thousandths).
        Candidate("random", two_stage_mlp, users=0),
        Candidate("random", two_stage_autoint, users=0),
        Candidate("random", dataclasses.replace(two_stage_mlp, anonymous_share=0.0), users=0),
        Candidate(
            "random", dataclasses.replace(two_stage_autoint, score_buckets=not two_stage_autoint.score_buckets), users=0
        ),
        Candidate("temporal", two_stage_mlp, users=0),
        Candidate("temporal", dataclasses.replace(two_stage_mlp, **config.TEMPORAL_TWO_STAGE), users=0),
        Candidate("random", dataclasses.replace(two_stage_mlp, recent_liked=0), users=0),
        Candidate("temporal", dataclasses.replace(two_stage_mlp, recent_liked=0, **config.TEMPORAL_TWO_STAGE), users=0),
    ]


def empty_results(tuning: Processed, baselines: list[dict]) -> dict:
    return {
        "validation": {
            "fit_rows": len(tuning.train),
            "validation_rows": len(tuning.test),
            "users": int(tuning.test["user_id"].nunique()),
        },
        "baselines": baselines,
        "candidates": [],
    }


def config_key(cfg: dict) -> str:
    """A candidate's identity: its settings (not the model name it was derived from); settings added to
    TrainConfig since a record was written take their defaults."""
    return json.dumps({**config.with_defaults(cfg), "model": None}, sort_keys=True)


def keep_current(results: dict, candidates: list[Candidate]) -> dict:
    """Drop the records of candidates no longer in the search space (so the report shows only those)."""
    current = {(c.part, config_key(dataclasses.asdict(c.cfg))) for c in candidates}
    kept = {
        carve: {**part, "candidates": [r for r in part["candidates"] if (carve, config_key(r["config"])) in current]}
        for carve, part in results.items()
    }
    return {carve: part for carve, part in kept.items() if part["candidates"]}


def save_candidate(out: Path, candidate: Candidate, header: dict, records: list[dict], space: list[Candidate]) -> None:
    """Merge one candidate's records into `out`, replacing an earlier run of the same candidate.

    Read, merge and write under a lock, so that candidates run side by side (`--only`) all land.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(f".{out.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = {}
        if out.is_file():
            with manifests.checked(out, REBUILD) as readable:
                results = json.loads(readable.read_text())
        results = keep_current(results, space)
        part = results.setdefault(candidate.part, header)
        key = config_key(dataclasses.asdict(candidate.cfg))
        part["candidates"] = [r for r in part["candidates"] if config_key(r["config"]) != key] + records
        write_json(out, results, producer=REBUILD)


def echo_prefixed(prefix: str, line: str) -> None:
    typer.echo(f"{prefix} {line}")


def tune_command(
    only: list[int] = typer.Option(
        None,
        help="Run only these candidates (indices into the search space) and "
        "merge their records into an existing tuning.json.",
    ),
    processed_dir: Path = typer.Option(config.PROCESSED_DIR),
    out: Path = typer.Option(config.ARTIFACTS_DIR / "tuning.json"),
) -> None:
    """Search learning rate and its decay, epochs, negatives, labels and embedding size on training rows only."""
    try:
        data = load_processed(processed_dir)
        if only and out.is_file():  # the records --only merges into: checked now, not after hours of training
            manifests.check(out, REBUILD)
    except (FileNotFoundError, manifests.ArtifactError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    space = search_space()
    if only and not all(0 <= index < len(space) for index in only):
        typer.echo(f"error: --only takes indices 0-{len(space) - 1}", err=True)
        raise typer.Exit(2)
    if not only and out.is_file():
        out.unlink()  # a full search starts afresh
    carved: dict[str, tuple[Processed, dict]] = {}
    for index in only or range(len(space)):
        candidate = space[index]
        if candidate.part not in carved:
            tuning = carve_validation(data, candidate.users, carve=candidate.carve)
            carved[candidate.part] = tuning, empty_results(tuning, baseline_records(tuning))
            for record in carved[candidate.part][1]["baselines"]:
                typer.echo(
                    f"{candidate.part} {record['baseline']}: full recall "
                    f"{record['full_catalog/recall@10']:.4f} ndcg {record['full_catalog/ndcg@10']:.4f}"
                    f" | reference ndcg {record['reference_protocol/ndcg@10']:.4f} auc {record['rated/auc']:.4f}"
                )
        tuning, header = carved[candidate.part]
        records = run_candidate(
            candidate.cfg,
            tuning,
            data.encoders.dims(),
            progress=partial(echo_prefixed, f"{index} {candidate.part}"),
        )
        save_candidate(out, candidate, header, records, space)
    typer.echo(f"wrote {out}")
