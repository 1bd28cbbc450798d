"""The ranking stage: DeepCTR's AutoInt / AutoInt+MLP wired from the feature schema, and trained models as
scorers.

architecture   the DeepCTR feature columns and model constructor (nothing is re-implemented)
candidates     candidate lists: each user's retrieval candidates with what the ranker reads about them
ranker_inputs  the one function that expands candidate lists into the ranker's input rows
scorers        a two-stage ranker over candidate lists, a 14-field model over rows or users × catalogue
model_files    a model on disk: <name>.keras and its training log

May import: pipeline.retrieval, pipeline.data and the bottom layer. Training, evaluation and serving build on
it; it never imports them.
"""
