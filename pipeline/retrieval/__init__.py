"""The candidate stage of the two-stage recommender: a liked list in → K candidates and their scores out.

retriever: the interface every caller uses (fit, fit_liked, save / load, the kind rule, `python -m pipeline
retrieval`);
base: what every kind shares (the users × movies matrices, scores at chosen movies, top-k unseen);
ease: EASE (Steck 2019), movie × movie weights; als: ALS via `implicit`, movie factors, for large catalogues.
Each kind fits a liked model and an every-rating model; the ranker reads both models' scores.

May import: pipeline.data and the bottom layer (config, files). Ranking, training and everything above
import it, never the other way round.
"""
