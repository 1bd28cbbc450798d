"""Benchmarks: `make bench` (recommend_bench: recommending speed and memory), `make bench-serve` (serve_bench:
the HTTP service under load) and `make bench-train` (train_bench: training throughput and memory at scale).
Each writes JSON (and a plot) under artifacts/.

May import anything below it; nothing imports it but the CLI.
"""
