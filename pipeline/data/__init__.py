"""The data layer: obtain and verify MovieLens 1M (download), turn it into coded tables and the two splits
(preprocess, on raw_files, fields, splits and processed), SYNTHETIC MovieLens-format data for scale tests
(synth), and per-user views of the ratings (history: liked histories and each user's latest rating-time context).

May import: pipeline.config, pipeline.files, pipeline.processes. Nothing above it (retrieval, ranking,
training, evaluation, serving) may be imported here.
"""
