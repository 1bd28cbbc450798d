"""Settings of serving and its benchmarks: LiteRT files, the HTTP service, make bench, bench-serve, bench-litert.

Part of the pipeline's one place for settings (config.py holds paths, the schema and the models).
"""

from __future__ import annotations

from pipeline.config import TOP_N

# Sizes of `make bench` (pipeline/bench/recommend_bench.py).
BENCH = {"repeats": 50, "cold_runs": 3, "liked": (2571, 1196, 260)}


# --- LiteRT (pipeline/ranking/export.py, runtimes.py): the served models without TensorFlow ---------------
# Each served model is also written as a LiteRT file beside its .keras (make export): float32, which the
# serving paths run, and, for make bench-litert, dynamic-range int8 and float16 variants. A quantized variant
# would be served only if it were within 0.001 of float32's Recall@10 and NDCG@10 and faster
# (docs/serving.md, "LiteRT"; artifacts/litert_bench.json).
LITERT = {
    "variants": ("float32", "int8", "float16"),
    "served_variant": "float32",
    # One thread per process: a request scores ~100 rows, and the service runs one process per core.
    "threads": 1,
    # Rows per interpreter call: on 2 cores 4,096 rows scored 60,000 candidate rows in 0.82 s, 32,768 in 2.4 s
    # (the larger intermediate tensors fall out of the caches); 100 rows (one list) 0.85 s.
    "batch_rows": 4096,
}


# make bench-litert (pipeline/bench/litert_bench.py): random liked lists and reference-mode users compared.
LITERT_BENCH = {"liked_lists": 100, "reference_users": 200, "repeats": 30, "seed": 0}


# --- Serving (pipeline/serving/service.py, http_api.py) ---
SERVE = {
    "host": "127.0.0.1",  # this machine only; `--host 0.0.0.0` (make serve HOST=0.0.0.0) opens it to others
    "port": 8000,
    # Worker processes, one per core: a recommend() call is mostly Python that holds the GIL, so one process
    # cannot use two cores. In each, `threads` recommender calls run at once and further requests wait in
    # line; more threads would only interleave the same GIL-bound work (README "Serving", make bench-serve).
    "workers": 2,
    "threads": 1,
    "preload_modes": ("two_stage",),  # loaded and warmed at start-up; the reference models load on first use
    "max_n": 100,  # the most movies one request may ask for (a two-stage list holds 100 candidates)
    "max_search": 100,  # the most titles one search returns
    "max_body_bytes": 64 * 1024,  # larger request bodies get 413; a full liked list (MAX_LIKED IDs) is ~4 KB
    # Connections (or requests in progress) per worker beyond which uvicorn answers 503 at once instead of
    # queueing without end; make bench-serve's 64 clients stay well under it.
    "max_connections": 256,
    "graceful_shutdown_s": 5,
    "latency_buckets_s": (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
}
# make bench-serve (pipeline/bench/serve_bench.py): each phase keeps `clients` connections busy for `seconds`, each
# asking for a random user's default Top-N (answered from the precomputed table), or, with a `query` that
# names a context, a Top-N scored when asked; `warmup_seconds` of the first load come first and are not counted.
SERVE_BENCH = {
    # Each phase: `clients` keep-alive connections for `seconds`, one kind of request (serve_bench.py); `runs`
    # repeats it against the same service (whether throughput depends on where connections landed).
    "phases": (
        {"kind": "precomputed", "clients": 16, "seconds": 10, "runs": 5},
        {"kind": "month", "clients": 16, "seconds": 15},
        {"kind": "new person", "clients": 16, "seconds": 15},
        {"kind": "precomputed", "clients": 64, "seconds": 10},
    ),
    "warmup_seconds": 2,
    "n": TOP_N,
    "seed": 0,
    "ready_timeout_s": 300,
    # The new people of the "new person" phase: 1 to 10 liked movies (MovieLens IDs).
    "liked_lists": (
        (2571,),
        (2571, 1196, 260),
        (318, 527, 593),
        (1, 2355, 3114, 588, 595),
        (2858, 1265, 1197, 1210, 1270, 2028, 110, 1198, 480, 589),
    ),
}
# The service's targets at 16 connections (make bench-serve states each for LiteRT, met or not): scored answers
# (another month, a new person) and precomputed ones, slowest run ÷ fastest of the precomputed ones, each worker's
# RSS, and start-up until every worker is warm.
SERVE_TARGETS = {
    "clients": 16,
    "scored_requests_per_s": 200,
    "p99_ms": 150,
    "precomputed_requests_per_s": 500,
    "slowest_over_fastest": 0.8,
    "worker_rss_mib": 500,
    "startup_s": 5,
    "errors": 0,
}
