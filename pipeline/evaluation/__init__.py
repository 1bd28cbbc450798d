"""Measuring: the metrics and protocols (metrics), the baselines every model is held against (baselines),
the evaluation of trained models (evaluate), new people (newcomers), the reproduction check against the
original project's table (check_repro), the report with its tables and plots (report, tables, plots), and
the hyper-parameter search on validation carves (tune).

May import: pipeline.training (tune and newcomers fit models), pipeline.ranking, pipeline.retrieval,
pipeline.data and the bottom layer. Only serving, the benchmarks and the CLI sit above it.
"""
