"""The web page: a user's profile, liked history and Top-N; a new person's Top-N from movies they pick; the report.

Run with `make app` (streamlit run pipeline/serving/app.py, on 127.0.0.1 unless APP_HOST says otherwise). Every list
and number comes from the Recommender (pipeline/serving/recommender.py, answers.py) and the evaluation's
files; this file only lays them out. It starts with whatever `make all` has made so far and says what is missing,
and names every served model or table that is damaged (with the command that rebuilds it) while serving the rest.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# `streamlit run` puts this file's folder on sys.path, not the repository root that holds `pipeline`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st  # noqa: E402

from pipeline import config, manifests  # noqa: E402
from pipeline.data.movielens import AGE_LABELS, GENDER_LABELS, OCCUPATION_LABELS
from pipeline.evaluation import report
from pipeline.labels import ARCHITECTURE_LABELS, MODE_LABELS, model_label  # noqa: E402
from pipeline.serving.answers import known_user_output, new_person_output
from pipeline.serving.errors import RecommendError, parse_user
from pipeline.serving.recommender import Recommender

ARCHITECTURE_CHOICES = {**ARCHITECTURE_LABELS, "both": "Both, side by side"}
LATEST = "month of the user's latest rating"
NOT_GIVEN = "not given"
BECAUSE = "because you liked"


def root() -> Path:
    """Read at call time so that tests can point the page at their own small run."""
    return Path(os.environ.get("ML_PIPELINE_ROOT", config.ROOT))


@st.cache_resource(show_spinner="Loading data…")
def load(processed_dir: str, models_dir: str) -> Recommender:
    return Recommender.load(Path(processed_dir), Path(models_dir))


def show_lists(lists: dict, n: int, because: bool) -> None:
    """Each Top-N list as a table, with its "because you liked" column when `because` (not in reference mode,
    whose movies retrieval did not propose)."""
    for column, (name, top) in zip(st.columns(len(lists)), lists.items()):
        column.markdown(f"**{name}**")
        shown = top[["rank", "movie_id", "title", "genres", "score"]]
        if because:
            named = ["; ".join(movie["title"] for movie in movies) for movies in top["because"]]
            shown = shown.assign(**{BECAUSE: named})
        # A plain table: every row is in the page, to read, copy and test.
        column.table(shown.set_index("rank"))


def user_view(rec: Recommender) -> None:
    left, middle, right = st.columns(3)
    user_text = left.text_input("User ID", value="3")
    architecture = middle.selectbox(
        "Architecture",
        list(ARCHITECTURE_CHOICES),
        index=list(ARCHITECTURE_CHOICES).index(config.DEFAULT_ARCHITECTURE),  # the product's default, as make recommend
        format_func=ARCHITECTURE_CHOICES.get,
    )
    mode = right.radio(
        "Mode",
        list(config.SERVED_MODES),
        format_func=MODE_LABELS.get,
        horizontal=True,
        help="two-stage: EASE retrieval proposes, AutoInt ranks (default); "
        "reference: the original project's models over the whole catalogue",
    )
    left, middle, right = st.columns(3)
    year = left.selectbox("Target year", [LATEST, *rec.valid_years()])
    month = middle.selectbox("Target month", [LATEST, *range(1, 13)], disabled=year == LATEST)
    n = right.number_input("How many movies (N)", min_value=1, max_value=100, value=10)
    try:
        user_id = parse_user(user_text)
        chosen_year = None if year == LATEST else int(year)
        chosen_month = None if year == LATEST or month == LATEST else int(month)
        output = known_user_output(rec, user_id, architecture, mode, chosen_year, chosen_month, int(n))
    except RecommendError as error:
        st.error(str(error))
        return
    who = output["profile"]
    st.subheader(f"User {who['user_id']}")
    for column, key in zip(st.columns(4), ("gender", "age", "occupation", "zip")):
        column.metric(key.capitalize(), who[key])
    st.subheader(f"Top {int(n)} movies not yet rated ({MODE_LABELS[mode]})")
    show_lists(output["recommendations"], int(n), because=mode == "two_stage")
    history = output["liked_history"]
    st.subheader(f"Liked history: {len(history)} movies rated 4 or 5, newest first")
    st.dataframe(history[["title", "genres", "rating", "date"]], hide_index=True)


@st.cache_data
def movie_choices(_rec: Recommender, key: str) -> dict[int, str]:
    """Every movie as {MovieLens ID: "Title (genres)"}, most liked first, for the searchable picker."""
    found = _rec.movies_by_likes()
    return {int(row.movie_id): f"{row.title} · {row.genres.replace('|', ', ')}" for row in found.itertuples()}


def new_person_view(rec: Recommender) -> None:
    st.markdown("Pick movies you liked (type to search); the two-stage model recommends at once, no retraining.")
    choices = movie_choices(rec, str(rec.models_dir))
    liked = st.multiselect(
        "Movies you liked",
        list(choices),
        format_func=choices.get,
        max_selections=config.MAX_LIKED,
        placeholder="Start typing a title…",
    )
    columns = st.columns(4)
    gender = columns[0].selectbox(
        "Gender (optional)",
        [NOT_GIVEN, *GENDER_LABELS],
        format_func=lambda g: GENDER_LABELS.get(g, g),
    )
    age = columns[1].selectbox("Age (optional)", [NOT_GIVEN, *AGE_LABELS], format_func=lambda a: AGE_LABELS.get(a, a))
    occupation = columns[2].selectbox(
        "Occupation (optional)",
        [NOT_GIVEN, *OCCUPATION_LABELS],
        format_func=lambda o: OCCUPATION_LABELS.get(o, o),
    )
    n = columns[3].number_input("How many movies", min_value=1, max_value=100, value=10, key="new_n")
    if not liked:
        st.info("Pick at least one movie.")
        return
    try:
        output = new_person_output(
            rec,
            liked,
            config.DEFAULT_ARCHITECTURE,
            "two_stage",
            None if gender == NOT_GIVEN else gender,
            None if age == NOT_GIVEN else int(age),
            None if occupation == NOT_GIVEN else int(occupation),
            None,
            None,
            int(n),
        )
    except RecommendError as error:
        st.error(str(error))
        return
    st.subheader(f"Top {int(n)} for you")
    show_lists(output["recommendations"], int(n), because=True)


def report_view(artifacts: Path) -> None:
    try:
        results = report.read_json(artifacts / "metrics.json")
        study = report.read_json(artifacts / "study" / "metrics.json")
    except manifests.ArtifactError as error:
        st.error(str(error))
        return
    if not results:
        st.error("No evaluation yet: run `make all` (or `make evaluate`) first.")
        return
    st.subheader("Against the original project's published table (reference protocol)")
    st.markdown(report.reference_table(results))
    st.subheader("Every model and baseline under every protocol")
    st.markdown(report.metrics_table(results))
    if study:
        st.subheader(f"The study: every model on both splits (made {study.get('made', '?')})")
        st.markdown(report.metrics_table(study))
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
    user_tab, new_tab, report_tab = st.tabs(["A MovieLens user", "New here? Pick movies", "Evaluation report"])
    try:
        rec = load(str(base / "data" / "processed"), str(base / "artifacts" / "models"))
    except RecommendError as error:
        rec = None
        for tab in (user_tab, new_tab):
            tab.error(f"{error}. The page needs the artifacts of `make all`.")
    if rec is not None:
        # The same sentence as the service's /v1/health and 503s; the views below still serve everything else.
        for name in config.models_of(*config.SERVED_MODES):
            for problem in filter(None, rec.problems(name)):
                st.warning(f"{model_label(name)} cannot be used: {problem}")
        with user_tab:
            user_view(rec)
        with new_tab:
            new_person_view(rec)
    with report_tab:
        report_view(base / "artifacts")


main()
