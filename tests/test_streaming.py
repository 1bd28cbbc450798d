"""Streamed training rows (pipeline/training/streaming.py, stream_plan.py): the same rows as the in-memory path,
whatever the shards."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipeline import config, config_scale
from pipeline.data import preprocess, raw_files
from pipeline.data.processed import load_processed, save_processed
from pipeline.ranking import model_files
from pipeline.ranking.runtimes import KerasRuntime
from pipeline.ranking.scorers import ModelScorer, score_rows
from pipeline.training import sampling, stream_plan, streaming

COLUMNS = [*config.FIELDS, "label"]


@pytest.fixture(scope="module")
def processed_dir(tmp_path_factory, raw_dir):
    folder = tmp_path_factory.mktemp("processed")
    processed = preprocess.preprocess(*raw_files.read_raw(raw_dir))
    save_processed(processed, folder)
    return folder


@pytest.fixture(scope="module")
def data(processed_dir):
    return load_processed(processed_dir)


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces and buffer far smaller than the data, so shuffling, buffering and sharding all happen."""
    monkeypatch.setitem(config_scale.STREAMING, "piece_rows", 700)
    monkeypatch.setitem(config_scale.STREAMING, "shuffle_buffer_rows", 1500)


def streamed(plan, part, epoch, batch_size, workers) -> pd.DataFrame:
    """Every row all `workers` stream for `part`, with the file row each comes from."""
    frames = []
    for worker in range(workers):
        for inputs, label, rows in streaming.batches(plan, part, epoch, batch_size, worker, workers, with_rows=True):
            frame = pd.DataFrame({field: values[:, 0] for field, values in inputs.items()})
            frame["label"], frame["row"] = label[:, 0], rows
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[[*COLUMNS, "row"]].astype({field: "int64" for field in config.FIELDS} | {"label": "float32"})
    return frame.sort_values([*COLUMNS, "row"] if "row" in frame else COLUMNS, ignore_index=True)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_without_negatives_the_rows_are_exactly_the_in_memory_paths(processed_dir, data, small_pieces, workers):
    cfg = dataclasses.replace(config.MODELS["autoint_mlp"], batch_size=256)
    plan, _ = streaming.open_plan(processed_dir, "random", cfg)
    rows = sampling.training_rows(data.train, cfg, data.movies)
    split_at = int(np.floor(len(rows) * (1 - cfg.validation_split)))  # Keras' validation_split
    for part, expected in (("train", rows.iloc[:split_at]), ("validation", rows.iloc[split_at:])):
        got = streamed(plan, part, epoch=0, batch_size=256, workers=workers).sort_values("row", ignore_index=True)
        assert got["row"].tolist() == list(range(expected.index[0], expected.index[-1] + 1))
        expected = expected.reset_index(drop=True)
        for field in config.FIELDS:
            assert np.array_equal(got[field].to_numpy(), expected[field].to_numpy()), field
        assert np.array_equal(got["label"].to_numpy(), expected["label"].to_numpy(dtype="float32"))


def test_with_negatives_the_rows_do_not_depend_on_workers_buffer_or_order(processed_dir, data, monkeypatch):
    cfg = dataclasses.replace(config.MODELS["autoint_mlp_sampled"], batch_size=512, seed=7)
    plan, _ = streaming.open_plan(processed_dir, "random", cfg)
    reference = canonical(streaming.epoch_frame(plan, epoch=1))
    for piece, buffer, workers in ((700, 1500, 1), (700, 1500, 2), (4096, 0, 3), (100_000, 100_000, 2)):
        monkeypatch.setitem(config_scale.STREAMING, "piece_rows", piece)
        monkeypatch.setitem(config_scale.STREAMING, "shuffle_buffer_rows", buffer)
        got = streamed(plan, "train", epoch=1, batch_size=512, workers=workers)
        pd.testing.assert_frame_equal(canonical(got), reference)
    # A second plan with the same seed gives the same rows; fresh negatives change with the epoch.
    again, _ = streaming.open_plan(processed_dir, "random", cfg)
    pd.testing.assert_frame_equal(canonical(streaming.epoch_frame(again, epoch=1)), reference)
    assert not canonical(streaming.epoch_frame(plan, epoch=2)).equals(reference)
    fixed, _ = streaming.open_plan(processed_dir, "random", dataclasses.replace(cfg, fresh_negatives=False))
    pd.testing.assert_frame_equal(
        canonical(streaming.epoch_frame(fixed, epoch=1)), canonical(streaming.epoch_frame(fixed, epoch=2))
    )


def test_negatives_follow_the_in_memory_paths_rules(processed_dir, data):
    """Rated rows: every training rating once (train or validation). Negatives: `negatives` per rating,
    of movies the user has no training rating for, with the user's fields and the rating's context, as
    sampling.sample_unrated makes them."""
    cfg = dataclasses.replace(config.MODELS["autoint_sampled"], negatives=3)
    plan, _ = streaming.open_plan(processed_dir, "random", cfg)
    rows = pd.concat(
        [streaming.epoch_frame(plan, 0, "train"), streaming.epoch_frame(plan, 0, "validation")], ignore_index=True
    )
    train = data.train.reset_index(drop=True)
    negatives = rows[rows["row"].duplicated(keep="first")]
    rated = rows.drop(negatives.index)
    assert sorted(rated["row"]) == list(range(len(train)))
    assert len(negatives) == 3 * len(train) and (negatives["label"] == 0).all()
    source = train.iloc[negatives["row"].to_numpy()].reset_index(drop=True)
    negatives = negatives.reset_index(drop=True)
    for field in (*config.USER_FIELDS, *config.CONTEXT_FIELDS):
        assert np.array_equal(negatives[field].to_numpy(), source[field].to_numpy()), field
    catalogue = data.movies.set_index("movie_id")
    for field in ("movie_year", "genre1"):
        assert np.array_equal(negatives[field].to_numpy(), catalogue.loc[negatives["movie_id"], field].to_numpy())
    rated_pairs = set(zip(train["user_id"], train["movie_id"]))
    assert not any(pair in rated_pairs for pair in zip(negatives["user_id"], negatives["movie_id"]))
    # The in-memory sampler draws from the same law: about as many distinct movies per user.
    in_memory = sampling.sample_unrated(train, data.movies, 3, "uniform", seed=cfg.seed)
    spread = negatives.groupby("user_id")["movie_id"].nunique().mean()
    assert abs(spread - in_memory.groupby("user_id")["movie_id"].nunique().mean()) < 0.1 * spread


def test_a_draw_depends_only_on_its_key_not_on_the_rows_drawn_with_it_or_their_order():
    def draws(rows, seed=7, epoch=1, kind=2, slot=1, attempt=3):
        return stream_plan.keyed_uniform(seed, epoch, kind, np.asarray(rows), slot=slot, attempt=attempt)

    first, rows = 10_000, np.arange(10_000, 12_000)
    whole = draws(rows)
    assert ((whole >= 0) & (whole < 1)).all() and len(np.unique(whole)) == len(rows)
    for some in ([11_999, 10_003, 10_000, 11_001, 10_003], [10_001], range(10_002, 10_700), range(11_500, 12_000)):
        assert np.array_equal(draws(some), whole[np.asarray(some) - first])
    for other in ({"seed": 8}, {"epoch": 2}, {"kind": 1}, {"slot": 0}, {"attempt": 4}):
        assert np.mean(draws(rows, **other) == whole) < 0.01, other
    assert len(draws([])) == 0


def test_every_worker_runs_the_same_number_of_full_batches(processed_dir, small_pieces):
    cfg = dataclasses.replace(config.MODELS["autoint_sampled"], batch_size=512)
    plan, _ = streaming.open_plan(processed_dir, "random", cfg)
    steps = streaming.steps_per_epoch(plan, "train", 1, cfg.batch_size, workers=2)  # for a 1-epoch fit
    for worker in range(2):
        sizes = [len(label) for _, label in streaming.batches(plan, "train", 0, 256, worker, 2, steps)]
        assert sizes == [256] * steps
    one = [
        len(label)
        for _, label in streaming.batches(
            plan, "train", 0, 512, 0, 1, streaming.steps_per_epoch(plan, "train", 1, 512, 1)
        )
    ]
    assert sum(one) == plan.rows_in("train", 0, 0, 1) and set(one[:-1]) == {512}


def test_unsupported_settings_are_refused():
    for change in ({"recency_weight": 1.0}, {"negatives_per": "user"}, {"history": 5}):
        with pytest.raises(ValueError, match="streaming input does not support"):
            stream_plan.check_supported(dataclasses.replace(config.MODELS["autoint_sampled"], **change))
    with pytest.raises(ValueError):
        stream_plan.check_supported(config.MODELS["autoint_two_stage"])


def test_streamed_training_saves_a_model_that_loads_and_scores(processed_dir, data, tmp_path):
    from pipeline.training import distributed

    cfg = dataclasses.replace(config.MODELS["autoint_mlp_sampled"], epochs=1, batch_size=1024, att_layer_num=1)
    history = distributed.run_worker(
        "autoint_mlp_sampled", cfg, "random", processed_dir, tmp_path, cluster=None, echo=lambda line: None
    )
    assert history["input"]["mode"] == "streaming" and history["input"]["workers"] == 1
    assert len(history["epochs"]) == 1 and np.isfinite(history["epochs"][0]["val_loss"])
    assert model_files.load_training_log("autoint_mlp_sampled", "random", tmp_path)["train_rows"] == 4 * len(data.train)
    model = model_files.load_keras(config.model_path("autoint_mlp_sampled", "random", tmp_path))
    scores = score_rows(ModelScorer(KerasRuntime(model)), data.test)
    assert scores.shape == (len(data.test),) and ((scores > 0) & (scores < 1)).all()
