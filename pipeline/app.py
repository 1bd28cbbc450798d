"""The web page: pick a user, see their profile, liked history and Top-N; and the evaluation report.

Run with `make app` (streamlit run pipeline/app.py). Every number and list comes from
pipeline.recommend and pipeline.evaluate; this file only lays them out.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# `streamlit run` puts this file's folder on sys.path, not the repository root that holds `pipeline`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402

from pipeline import config, evaluate, recommend  # noqa: E402

MODEL_LABELS = {"autoint": "AutoInt", "autoint_mlp": "AutoInt+MLP", "both": "Both, side by side"}
LATEST = "month of the user's latest rating"


def root() -> Path:
    """Read at call time so that tests can point the page at their own small run."""
    return Path(os.environ.get("ML_PIPELINE_ROOT", config.ROOT))


@st.cache_resource(show_spinner="Loading data and models…")
def load(processed_dir: str, models_dir: str) -> recommend.Recommender:
    rec = recommend.load_recommender(Path(processed_dir), Path(models_dir))
    for mode in recommend.MODES:
        for model in config.MODEL_NAMES:
            rec.scorer(recommend.model_name(model, mode))
    return rec


def recommend_view(rec: recommend.Recommender) -> None:
    with st.sidebar:
        user_text = st.text_input("User ID", value="3")
        model = st.selectbox("Model", list(MODEL_LABELS), format_func=MODEL_LABELS.get)
        mode = st.radio("Training mode", list(recommend.MODES), horizontal=True,
                        help="ranking: trained to find unrated movies a user will like (default); "
                             "seed: the seed project's model of liked-given-rated")
        year = st.selectbox("Target year", [LATEST, *recommend.valid_years(rec)])
        month = st.selectbox("Target month", [LATEST, *range(1, 13)], disabled=year == LATEST)
        n = st.number_input("How many movies (N)", min_value=1, max_value=100, value=10)
    try:
        user_id = recommend.parse_user(user_text)
        who = recommend.profile(rec, user_id)
        history = recommend.liked_history(rec, user_id)
        chosen_year = None if year == LATEST else int(year)
        chosen_month = None if year == LATEST or month == LATEST else int(month)
        models = list(config.MODEL_NAMES) if model == "both" else [model]
        lists = {name: recommend.recommend(rec, user_id, name, chosen_year, chosen_month, int(n), mode)
                 for name in models}
    except recommend.RecommendError as error:
        st.error(str(error))
        return

    st.subheader(f"User {who['user_id']}")
    columns = st.columns(4)
    for column, key in zip(columns, ("gender", "age", "occupation", "zip")):
        column.metric(key.capitalize(), who[key])
    st.subheader(f"Top {int(n)} movies not yet rated ({mode} mode)")
    for column, (name, top) in zip(st.columns(len(lists)), lists.items()):
        column.markdown(f"**{MODEL_LABELS[name]}**")
        # A plain table: every row is in the page, to read, copy and test.
        column.table(top[["rank", "movie_id", "title", "genres", "score"]].set_index("rank"))
    st.subheader(f"Liked history: {len(history)} movies rated 4 or 5, newest first")
    st.dataframe(history[["title", "genres", "rating", "date"]], hide_index=True)


def report_view(artifacts: Path) -> None:
    metrics_path = artifacts / "metrics.json"
    if not metrics_path.is_file():
        st.error("No evaluation yet: run `make evaluate` (or `make all`) first.")
        return
    results = json.loads(metrics_path.read_text())
    st.subheader("Against the seed's published table (seed protocol)")
    st.markdown(evaluate.seed_comparison_table(results))
    st.subheader("Every model and baseline under every protocol and split")
    st.caption("random: the seed's 80/20 split; temporal: each user's latest 20 % of ratings as test")
    st.markdown(evaluate.metrics_table(results))
    for image, caption in (("metrics.png", "Models vs baselines"), ("loss_curves.png", "Training curves")):
        if (artifacts / image).is_file():
            st.image(str(artifacts / image), caption=caption)
    if (artifacts / "report.md").is_file():
        with st.expander("Full report (report.md)"):
            st.markdown((artifacts / "report.md").read_text())


def main() -> None:
    st.set_page_config(page_title="AutoInt movie recommender", layout="wide")
    st.title("AutoInt movie recommender · MovieLens 1M")
    base = root()
    recommend_tab, report_tab = st.tabs(["Recommendations", "Evaluation report"])
    with recommend_tab:
        try:
            rec = load(str(base / "data" / "processed"), str(base / "artifacts" / "models"))
        except recommend.RecommendError as error:
            st.error(f"{error}. The page needs the artifacts of `make all`.")
        else:
            recommend_view(rec)
    with report_tab:
        report_view(base / "artifacts")


main()
