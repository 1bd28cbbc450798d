"""The web page's logic through Streamlit's own testing API, on the small generated run."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).parent.parent / "pipeline" / "app.py")


@pytest.fixture
def page(small_run, monkeypatch):
    monkeypatch.setenv("ML_PIPELINE_ROOT", str(small_run))
    return AppTest.from_file(APP, default_timeout=120)


def test_user_input_shows_profile_history_and_n_rows(page):
    page.run()
    page.text_input[0].set_value("5")
    page.number_input[0].set_value(7)
    page.selectbox[0].set_value("autoint")
    page.run()
    assert not page.exception and not page.error
    assert len(page.metric) == 4
    assert any("User 5" in s.value for s in page.subheader)
    assert len(page.table) == 1 and len(page.table[0].value) == 7
    assert len(page.dataframe) == 1  # the liked history
    assert (page.dataframe[0].value["rating"] >= 4).all()


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


def test_report_view_shows_metrics_tables(page):
    page.run()
    text = " ".join(m.value for m in page.markdown)
    assert "NDCG@10 seed" in text and "most popular" in text


def test_missing_artifacts_show_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ML_PIPELINE_ROOT", str(tmp_path))
    page = AppTest.from_file(APP, default_timeout=60)
    page.run()
    assert not page.exception
    messages = " ".join(e.value for e in page.error)
    assert "make preprocess" in messages and "make evaluate" in messages
