"""Whole answers, as the terminal command and the web page show them: a known user's or a new person's
profile, liked movies, context and Top-N lists of one architecture or both ("both")."""

from __future__ import annotations

from pipeline import config
from pipeline.data.movielens import AGE_LABELS, GENDER_LABELS, OCCUPATION_LABELS
from pipeline.serving.errors import RecommendError, model_name
from pipeline.serving.recommender import Recommender
from pipeline.serving.served_data import context_source
from pipeline.serving.served_models import check_trained


def architectures(choice: str) -> list[str]:
    """The architectures a --model choice stands for ("both": all of them)."""
    return list(config.ARCHITECTURES) if choice == "both" else [choice]


def known_user_output(rec: Recommender, user_id: int, architecture: str, mode: str, year, month, n) -> dict:
    names = [model_name(choice, mode) for choice in architectures(architecture)]
    who, liked = rec.profile(user_id), rec.liked_history(user_id)
    when = rec.context(user_id, year, month)
    return {
        "profile": who,
        "context": {"year": when[0], "month": when[1], "source": context_source(year, month)},
        "mode": mode,
        "liked_history": liked,
        # year/month as given (None: the user's own context), so that a default request is answered from the
        # precomputed table, as Recommender.top_for_user decides.
        "recommendations": {name: rec.top_for_user(name, user_id, year, month, n) for name in names},
    }


def new_person_output(
    rec: Recommender, liked_ids: list[int], architecture: str, mode: str, gender, age, occupation, year, month, n
) -> dict:
    if mode != "two_stage":
        raise RecommendError(
            "a new person is served by the two-stage models only (the reference models need a "
            "known user_id); drop --mode"
        )
    names = [model_name(choice, "two_stage") for choice in architectures(architecture)]
    given = rec.liked_movies(liked_ids)
    when = rec.context(None, year, month)
    check_trained(rec.models_dir, names)  # before the profile is checked: a missing model is named first
    who = {
        "user_id": None,
        "gender": GENDER_LABELS.get(gender, "not given") if gender else "not given",
        "age": AGE_LABELS.get(age, "not given") if age is not None else "not given",
        "occupation": OCCUPATION_LABELS.get(occupation, "not given") if occupation is not None else "not given",
    }
    return {
        "profile": who,
        "context": {"year": when[0], "month": when[1], "source": context_source(year, month, new_person=True)},
        "mode": "two_stage",
        "liked_history": given,
        "recommendations": {
            name: rec.top_for_liked(name, liked_ids, gender, age, occupation, *when, n) for name in names
        },
    }
