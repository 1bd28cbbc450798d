"""Damaged artifacts on the real code paths, on a copy of the small generated run with its precomputed tables: the
terminal ends in one line naming the file and the command that rebuilds it (exit 2); the service starts degraded,
says in /v1/health what cannot be used and why, answers 503 to what needs it and serves the rest; the page says
the same sentence. Each case is what a user did to a finished `make all` (issue #22)."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from pipeline import config, manifests
from pipeline.cli import app
from pipeline.serving.errors import Unusable
from pipeline.serving.http_api import create_app
from pipeline.serving.recommender import Recommender
from pipeline.serving.served_models import precomputed_path

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "pipeline" / "serving" / "app.py")
DEFAULT = config.model_name(config.DEFAULT_ARCHITECTURE)  # autoint_mlp_two_stage
OTHER = config.model_name("autoint")  # autoint_two_stage


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A copy of the finished run (conftest: the small run with its precomputed tables) for one test to damage."""
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def dirs(root: Path) -> list[str]:
    return ["--processed-dir", str(root / "data" / "processed"), "--models-dir", str(root / "artifacts" / "models")]


def model_file(root: Path, name: str = DEFAULT, suffix: str = ".keras") -> Path:
    return config.model_path(name, "random", root / "artifacts" / "models").with_suffix(suffix)


def truncate(path: Path, size: int = 2000) -> None:
    with open(path, "r+b") as stream:
        stream.truncate(size)


def overwrite(path: Path, text: str = "this is not what the stage wrote\n") -> None:
    path.write_text(text)


def one_line(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    for word in words:
        assert word in line, line
    return line


def recommend(root: Path, *args: str):
    return CliRunner().invoke(app, ["recommend", *args, *dirs(root)])


def test_a_truncated_model_names_the_file_and_make_train(run):
    truncate(model_file(run))
    one_line(
        recommend(run, "--user", "3", "--month", "1", "--runtime", "keras"),
        f"{DEFAULT}.keras is damaged",
        f"`make train MODEL={DEFAULT}`",
    )
    # The other architecture still works; and the serving paths score from the LiteRT file, which is intact.
    assert (
        recommend(run, "--user", "3", "--architecture", "autoint", "--month", "1", "--runtime", "keras").exit_code == 0
    )
    assert recommend(run, "--user", "3", "--month", "1").exit_code == 0


def test_a_truncated_litert_file_names_the_file_and_make_export(run):
    truncate(model_file(run, suffix=".tflite"))
    one_line(recommend(run, "--user", "3", "--month", "1"), f"{DEFAULT}.tflite is damaged", "`make export`")
    assert recommend(run, "--user", "3", "--architecture", "autoint", "--month", "1").exit_code == 0


def test_a_damaged_training_log_names_it_and_make_train(run):
    overwrite(model_file(run, suffix=".training_log.json"), '{"config": ')
    one_line(recommend(run, "--user", "3", "--month", "1"), f"{DEFAULT}.training_log.json", f"MODEL={DEFAULT}`")


def test_a_table_overwritten_with_text_names_it_and_make_precompute(run):
    overwrite(precomputed_path(DEFAULT, run / "artifacts" / "models"))
    one_line(recommend(run, "--user", "3"), f"precomputed/{DEFAULT}.parquet is damaged", "`make precompute`")


def test_damaged_encoders_or_data_tables_name_make_preprocess(run):
    shutil.copy2(REPO / "pyproject.toml", run / "data" / "processed" / "movies.parquet")  # a file, not a table
    one_line(recommend(run, "--user", "3"), "movies.parquet", "`make preprocess`")
    overwrite(run / "data" / "processed" / "encoders.json", '{"fields": ["user_id"')
    one_line(recommend(run, "--user", "3"), "encoders.json", "`make preprocess`")


def test_a_truncated_retrieval_stage_names_make_retrieval(run):
    truncate(run / "artifacts" / "models" / "retrieval.npz")
    one_line(recommend(run, "--user", "3", "--month", "1"), "retrieval.npz", "`make retrieval`")


def test_the_issues_case_from_a_new_process_is_one_line_and_exit_2(run):
    truncate(model_file(run, suffix=".tflite"), 20_000)  # the file the serving paths score with
    command = [sys.executable, "-m", "pipeline", "recommend", "--user", "3", "--month", "1", *dirs(run)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"{DEFAULT}.tflite is damaged" in done.stderr and "`make export`" in done.stderr


def test_a_damaged_file_is_looked_at_once_then_remembered(run, monkeypatch):
    rec = Recommender.load(run / "data" / "processed", run / "artifacts" / "models")
    table = precomputed_path(OTHER, run / "artifacts" / "models")
    overwrite(table, "x" * table.stat().st_size)  # same size: only the hash tells
    looked = []
    real = manifests.sha256_of
    monkeypatch.setattr(manifests, "sha256_of", lambda path: looked.append(path) or real(path))
    for _ in range(3):
        with pytest.raises(Unusable, match="sha256"):
            rec.top_for_user(OTHER, 3)
    assert looked == [table]
    assert rec.top_for_user(OTHER, 3, month=1)["movie_id"].nunique() == config.TOP_N  # scored instead: fine


@pytest.fixture
def degraded(run):
    """The service over a run whose default model's LiteRT file is truncated and whose other two-stage table is
    text."""
    truncate(model_file(run, suffix=".tflite"))
    overwrite(precomputed_path(OTHER, run / "artifacts" / "models"))
    service = create_app(run / "data" / "processed", run / "artifacts" / "models", threads=1)
    with TestClient(service) as client:
        yield client


def test_the_service_starts_degraded_and_health_says_what_and_why(degraded):
    health = degraded.get("/v1/health").json()
    assert health["status"] == "degraded" and len(health["problems"]) == 2
    broken, table = health["models"][DEFAULT], health["models"][OTHER]
    assert not broken["usable"] and f"{DEFAULT}.tflite is damaged" in broken["problem"]
    assert "`make export`" in broken["problem"] and broken["problem"] in health["problems"]
    assert table["usable"] and not table["precomputed"] and "`make precompute`" in table["precomputed_problem"]
    for name in config.models_of("reference"):
        assert health["models"][name]["usable"] and health["models"][name]["problem"] is None
    deadline = time.monotonic() + 120
    while not degraded.get("/v1/health").json()["warm"]:  # the warm-up gets past the damaged model
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_requests_that_need_a_damaged_file_answer_503_and_the_others_are_served(degraded):
    health = degraded.get("/v1/health").json()
    answer = degraded.get("/v1/users/3/recommendations")
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"] == "unavailable" and body["message"] == health["models"][DEFAULT]["problem"]
    assert body["file"].endswith(f"{DEFAULT}.tflite") and body["rebuild"] == "make export"
    answer = degraded.get("/v1/users/3/recommendations", params={"architecture": "autoint"})
    assert answer.status_code == 503 and answer.json()["rebuild"] == "make precompute"
    served = [
        degraded.get("/v1/users/3/recommendations", params={"architecture": "autoint", "month": 1}),
        degraded.get("/v1/users/3/recommendations", params={"mode": "reference"}),
        degraded.get("/v1/users/3"),
        degraded.get("/v1/users/3/liked"),
        degraded.get("/v1/movies", params={"q": "movie"}),
        degraded.get("/metrics"),
    ]
    assert [answer.status_code for answer in served] == [200] * len(served)
    assert len(served[0].json()["items"]) == config.TOP_N


def test_new_people_are_served_by_the_intact_model_and_refused_by_the_damaged_one(degraded):
    movie_ids = [item["movie_id"] for item in degraded.get("/v1/movies", params={"q": "movie"}).json()["items"][:3]]
    answer = degraded.post("/v1/recommendations", json={"liked": movie_ids})
    assert answer.status_code == 503 and answer.json()["rebuild"] == "make export"
    answer = degraded.post("/v1/recommendations", json={"liked": movie_ids, "architecture": "autoint"})
    assert answer.status_code == 200 and len(answer.json()["items"]) == config.TOP_N


def test_damaged_data_still_starts_a_service_that_says_why(run):
    overwrite(run / "data" / "processed" / "encoders.json", "{")
    with TestClient(create_app(run / "data" / "processed", run / "artifacts" / "models", threads=1)) as client:
        health = client.get("/v1/health").json()
        assert health["status"] == "degraded" and health["models"] == {}
        assert len(health["problems"]) == 1 and "`make preprocess`" in health["problems"][0]
        for path in ("/v1/users/3", "/v1/users/3/recommendations", "/v1/movies?q=a"):
            answer = client.get(path)
            assert answer.status_code == 503 and answer.json()["message"] == health["problems"][0]
        assert client.get("/metrics").status_code == 200


def test_the_page_says_the_same_sentence(run, monkeypatch):
    truncate(model_file(run, suffix=".tflite"))
    monkeypatch.setenv("ML_PIPELINE_ROOT", str(run))
    page = AppTest.from_file(APP, default_timeout=120)
    page.run()
    assert not page.exception
    problem = Recommender.load(run / "data" / "processed", run / "artifacts" / "models").problems(DEFAULT)[0]
    assert "`make export`" in problem
    assert any(problem in warning.value for warning in page.warning)
    assert any(error.value == problem for error in page.error)  # the user view's default model
    page.selectbox[0].set_value("autoint")
    page.run()
    assert not page.error and len(page.table) == 1  # the other architecture is served
