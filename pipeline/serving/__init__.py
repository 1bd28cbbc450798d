"""Recommending: the recommending core (recommender, on served_models, served_data and errors), its terminal
commands (terminal), the HTTP API (http_api, with http_routes, http_state, http_errors, schemas and middleware),
the service that runs it (service) and the web page (app). Movies and users go in and out as MovieLens IDs.

May import: pipeline.evaluation (the page shows the report), pipeline.ranking, pipeline.retrieval,
pipeline.data and the bottom layer; never pipeline.training. Only the benchmarks and the CLI sit above it.
"""
