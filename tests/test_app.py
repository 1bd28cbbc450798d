"""The web page's logic through Streamlit's own testing API, on the small generated run."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.serving.recommender import Recommender

APP = str(Path(__file__).parent.parent / "pipeline" / "serving" / "app.py")


@pytest.fixture
def page(small_run, monkeypatch):
    monkeypatch.setenv("ML_PIPELINE_ROOT", str(small_run))
    return AppTest.from_file(APP, default_timeout=120)


@pytest.fixture(scope="module")
def rec(small_run):
    return Recommender.load(small_run / "data" / "processed", small_run / "artifacts" / "models")


def test_user_input_shows_profile_history_and_the_cores_n_rows(page, rec):
    page.run()
    page.text_input[0].set_value("5")
    page.number_input[0].set_value(7)
    page.selectbox[0].set_value("autoint")
    page.run()
    assert not page.exception and not page.error
    assert [metric.value for metric in page.metric] == [
        rec.profile(5)[key] for key in ("gender", "age", "occupation", "zip")
    ]
    assert len(page.table) == 1
    shown = page.table[0].value
    expected = rec.recommend(5, "autoint", n=7)
    assert list(shown["movie_id"]) == list(expected["movie_id"])
    history = page.dataframe[0].value
    assert list(history["title"]) == list(rec.liked_history(5)["title"])


def test_comparison_mode_shows_two_tables_side_by_side(page):
    page.run()
    page.selectbox[0].set_value("both")
    page.run()
    assert not page.exception
    assert len(page.table) == 2
    assert len(page.table[0].value) == len(page.table[1].value) == 10


def test_unknown_user_shows_a_message(page):
    page.run()
    page.text_input[0].set_value("99999")
    page.run()
    assert not page.exception
    assert any("unknown user 99999" in e.value for e in page.error)


def test_a_new_person_picks_movies_and_gets_the_cores_top_n(page, rec):
    page.run()
    picker = page.multiselect[0]
    liked = list(rec.movies_by_likes()["movie_id"].head(3))
    picker.set_value(liked)
    page.run()
    assert not page.exception and not page.error
    tables = [table.value for table in page.table]
    expected = rec.recommend_for_liked(liked, n=10)
    assert any(list(table["movie_id"]) == list(expected["movie_id"]) for table in tables)


def test_report_view_shows_metrics_tables(page):
    page.run()
    text = " ".join(m.value for m in page.markdown)
    assert "NDCG@10 reference" in text and "most popular" in text and "AutoInt+MLP (two-stage)" in text


def test_missing_artifacts_show_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_PIPELINE_ROOT", str(tmp_path))
    page = AppTest.from_file(APP, default_timeout=60)
    page.run()
    assert not page.exception
    messages = " ".join(e.value for e in page.error)
    assert "make preprocess" in messages and "make all" in messages


def because_column(top) -> list[str]:
    return ["; ".join(movie["title"] for movie in because) for because in top["because"]]


def test_both_tabs_show_because_you_liked_and_reference_mode_does_not(page, rec):
    page.run()
    page.text_input[0].set_value("5")
    page.selectbox[0].set_value("autoint")
    page.run()
    assert not page.exception and not page.error
    want = because_column(rec.recommend(5, "autoint"))
    assert list(page.table[0].value["because you liked"]) == want and any(want)
    page.radio[0].set_value("reference")
    page.run()
    assert not page.exception and "because you liked" not in page.table[0].value.columns
    liked = list(rec.movies_by_likes()["movie_id"].head(3))
    page.multiselect[0].set_value(liked)
    page.run()
    assert not page.exception and not page.error
    want = because_column(rec.recommend_for_liked(liked))
    assert any(want)
    assert [list(table.value["because you liked"]) for table in page.table if "because you liked" in table.value] == [
        want
    ]
