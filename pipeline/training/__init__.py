"""Fitting models: `python -m pipeline train` (train), the 14-field models' sampled negatives (sampling), the
two-stage ranker's out-of-fold candidate lists and listwise fit (ranker), streamed input through tf.data
(streaming), several workers on MultiWorkerMirroredStrategy (distributed), and what every path shares
(callbacks, training_log).

May import: pipeline.ranking, pipeline.retrieval, pipeline.data and the bottom layer. Evaluation, serving and
the benchmarks build on it; it never imports them.
"""
