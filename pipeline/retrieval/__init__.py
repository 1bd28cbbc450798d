"""The candidate stage of the two-stage recommender: a liked list in → K candidates and their scores out.

ease: EASE (Steck 2019) fitted on liked and on every rating; the ranker reads both models' scores.

May import: pipeline.data and the bottom layer (config, files). Ranking, training and everything above
import it, never the other way round.
"""
