"""Settings of scale: streamed input, multi-worker training, SYNTHETIC data and the scale benchmarks.

Part of the pipeline's one place for settings (config.py holds paths, the schema and the models).
"""

from __future__ import annotations

# Streaming input (pipeline/training/streaming.py, `train --streaming`, always with --workers). A worker reads its rows
# of train.parquet (temporal_train.parquet) row group by row group, in pieces of `piece_rows` in random order
# through a shuffle buffer of `shuffle_buffer_rows` rated rows, draws the negatives per piece, and tf.data keeps
# `prefetch_batches` batches ready. Memory is bounded by one row group + the buffer + the prefetched batches.
# A sampled negative that hits a rated movie is redrawn up to `negative_attempts` times (as sampling.py, which then
# drops the row; here the last draw is kept so that every worker knows its row count in advance).
STREAMING = {"piece_rows": 65_536, "shuffle_buffer_rows": 262_144, "prefetch_batches": 8, "negative_attempts": 50}
# The two-stage rankers' candidate lists (pipeline/training/ranker.py, pipeline/ranking/list_shards.py) are made and
# written LIST_CHUNK_USERS users at a time: one parquet row group each, and one users x catalogue block of
# retrieval scores in memory (4,096 x 18,530 movies x 4 bytes = 0.3 GB at 25 M synthetic ratings). Streamed
# training (pipeline/training/list_streaming.py) shuffles whole lists through a buffer of `shuffle_buffer_lists`.
LIST_CHUNK_USERS = 4096
LIST_STREAMING = {"shuffle_buffer_lists": 16_384, "prefetch_batches": 8}
# Multi-worker training (pipeline/training/distributed.py): local workers listen on `host`; when one dies the others are
# sent SIGTERM and, after `grace_seconds`, SIGKILL.
WORKERS = {"host": "127.0.0.1", "grace_seconds": 5.0, "poll_seconds": 0.2}
# SYNTHETIC MovieLens-format data (pipeline/data/synth.py), for scale tests only: data/synthetic-<size>/ holds
# ml-1m-format/ (the raw files), processed/ and the SYNTHETIC.md marker. The shape follows ML-1M at 1 M
# ratings (165.6 ratings per user, 3,706 rated movies, every user >= 20 ratings); the catalogue grows as
# ratings ** 0.5. The taste settings plant the structure a model can learn (see synth.py).
SYNTH = {
    "folder_prefix": "synthetic-",
    "raw_folder": "ml-1m-format",
    "ratings_per_user": 165.6,
    "movies_at_1m": 3706,
    "movies_exponent": 0.5,
    "min_ratings_per_user": 20,
    "activity_sigma": 1.1,
    "popularity_sigma": 1.3,
    "taste_dim": 8,
    "taste_clusters": 24,
    "selection_strength": 1.0,
    "taste_strength": 0.6,
    "mean_score": 3.1,
    "noise": 0.9,
    "max_rounds": 40,
}
# `make bench-train` (pipeline/bench/train_bench.py): one epoch of `model` streamed at each synthetic size with 1 and
# 2 workers, and one epoch of `pipeline_model`'s input alone (its rows and negatives, no model); on real ML-1M,
# `ml1m_model` in memory, streamed, and streamed on 2 workers. Both are reference models without negatives so that
# an epoch at 25 M (20 M rows) and the three ML-1M runs take minutes each on 2 cores, not the hours that the 4x
# rows of a sampled model would.
TRAIN_BENCH = {
    "sizes": ("1M", "5M", "25M"),
    "workers": (1, 2),
    "model": "autoint_mlp",
    "pipeline_model": "autoint_mlp_sampled",
    "ml1m_model": "autoint_mlp",
}
# `make bench-scale` and `make all DATA=synthetic-<size>` (pipeline/bench/scale_bench.py, the Makefile's synthetic
# rules): the product path on SYNTHETIC data. A ranker epoch there is cut to `epoch_lists` lists (all of them at 1 M,
# ~40 % at 5 M, ~8 % at 25 M: a full 25 M epoch is ~75 M candidate rows, about an hour on 2 cores); the bench
# projects the full epoch from the measured rows/s. Every stage's peak RSS is held to `peak_rss_target_gib`.
# Two workers share this machine's two cores, so their epoch says what the collectives cost, not a speed-up: it is
# measured at the sizes of `two_worker_sizes` (at 25 M it would add ~10 minutes to the bench for the same ratio).
SCALE = {
    "sizes": ("1M", "5M", "25M"),
    "epoch_lists": 60_000,
    "two_worker_sizes": ("1M", "5M"),
    "peak_rss_target_gib": 6.0,
}
SCALE_TARGETS = {
    "peak_rss_gib_at_25m": 4.0,  # training at 25 M synthetic ratings
    "workers_quality_gap": 0.005,  # 2 vs 1 worker on ML-1M: test AUC and full-catalogue Recall@10
    "streaming_throughput_loss": 0.10,  # streaming vs in-memory rows/s on ML-1M
}
