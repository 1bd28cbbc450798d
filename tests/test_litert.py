"""The served models as LiteRT files (pipeline/ranking/export.py, runtimes.py): exported beside their .keras files,
ranking exactly as Keras does, damaged files refused in one line, and no serving path importing TensorFlow.

"No TensorFlow" is checked in fresh interpreters: each runs a serving path for real (the terminal command, the
HTTP app with its lifespan, the precompute command, the web page), then reports whether any `tensorflow` module
was imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import config, manifests
from pipeline.cli import app
from pipeline.ranking import candidates, export, model_files, scorers
from pipeline.serving.errors import Unusable
from pipeline.serving.recommender import Recommender

REPO = Path(__file__).parent.parent
SERVED = config.models_of(*config.SERVED_MODES)


def dirs(run: Path) -> list[str]:
    return ["--processed-dir", str(run / "data" / "processed"), "--models-dir", str(run / "artifacts" / "models")]


def imports_tensorflow(code: str, run: Path) -> dict:
    """Run `code` in a new interpreter (ML_PIPELINE_ROOT = the run); its JSON line: what it printed, plus whether
    TensorFlow (or tf-keras, or DeepCTR) was imported."""
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        heavy = {m.split(".")[0] for m in sys.modules} & {"tensorflow", "tf_keras", "deepctr"}
        heavy = sorted(heavy)
        print(json.dumps({"heavy": heavy, "out": OUT}))
        """
    )
    env = {**os.environ, "ML_PIPELINE_ROOT": str(run), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def recs(small_run):
    processed, models = small_run / "data" / "processed", small_run / "artifacts" / "models"
    return {runtime: Recommender.load(processed, models, runtime=runtime) for runtime in ("litert", "keras")}


def test_every_served_model_has_a_float32_litert_file_recorded_in_its_manifest(small_run):
    models_dir = small_run / "artifacts" / "models"
    for name in SERVED:
        path = config.litert_path(name, "random", models_dir)
        assert path.name == f"{name}.tflite" and path.stat().st_size > 10_000
        manifests.check(path, deep=True)  # raises if the file is not the one recorded
        recorded = manifests.read_manifest(path)
        assert recorded["producer"] == "make export"
        log = model_files.load_training_log(name, "random", models_dir)
        assert recorded["settings_digest"] == manifests.digest(log["config"])


def test_litert_and_keras_give_the_same_top_10_for_every_user_and_for_liked_lists(recs, small_run):
    lite, keras = recs["litert"], recs["keras"]
    names = list(SERVED)
    for chunk_lite, chunk_keras in zip(lite.every_users_top(names, 10), keras.every_users_top(names, 10)):
        for name in names:
            got, want = chunk_lite[name], chunk_keras[name]
            assert len(got) == len(want) > 0
            assert (
                got[["user_id", "rank", "movie_id"]].to_numpy() == want[["user_id", "rank", "movie_id"]].to_numpy()
            ).all()
            np.testing.assert_allclose(got["score"], want["score"], atol=1e-5)
    rng = np.random.default_rng(0)
    movie_ids = lite.movies_by_likes()["movie_id"].to_numpy()
    for _ in range(30):
        liked = rng.choice(movie_ids[:80], size=int(rng.integers(1, 8)), replace=False).tolist()
        for name in config.TWO_STAGE_MODELS:
            got, want = lite.top_for_liked(name, liked), keras.top_for_liked(name, liked)
            assert got["movie_id"].tolist() == want["movie_id"].tolist()


def test_quantized_variants_are_smaller_and_score_close_to_float32(small_run, tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    name = config.model_name(config.DEFAULT_ARCHITECTURE)
    source = small_run / "artifacts" / "models"
    # The float32 file comes with the copy (the small run exported it); only the quantized ones are made here.
    for path in [*source.glob(f"{name}.*"), *source.glob("retrieval.*")]:
        if path.is_file():
            (models_dir / path.name).write_bytes(path.read_bytes())
    written = export.export_model(name, "random", models_dir, ["int8", "float16"])
    assert written == [config.litert_path(name, "random", models_dir, v) for v in ("int8", "float16")]
    for variant in ("float32", "int8", "float16"):
        manifests.check(config.litert_path(name, "random", models_dir, variant), deep=True)
    sizes = {
        v: config.litert_path(name, "random", models_dir, v).stat().st_size for v in ("float32", "int8", "float16")
    }
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    rec = Recommender.load(small_run / "data" / "processed", models_dir, runtime="keras")
    keras = rec.scorer(name)
    lists = candidates.user_lists(keras.retrieval, rec.ratings[rec.ratings["user_id"] < 40], rec.users, keras.cfg)
    want = keras.scorer(lists, keras.movies)
    for variant in ("float32", "int8", "float16"):
        lite = scorers.load_scorer(name, "random", models_dir, keras.retrieval, rec.movies, "litert", variant)
        got = lite.scorer(lists, lite.movies)
        assert got.shape == want.shape == (40, keras.cfg.candidates)
        # float16 rounds DeepCTR's mean-pooling epsilon (1e-8) to 0: a list whose history is empty (a user with
        # no liked movie) scores 0/0 = NaN there, one reason float32 is what is served (docs/serving.md).
        rows = (lists.history > 0).any(axis=1) if variant == "float16" else slice(None)
        assert np.abs(got[rows] - want[rows]).max() < (1e-5 if variant == "float32" else 0.05), variant


def test_a_damaged_or_missing_litert_file_is_one_line_naming_make_export(small_run, tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    os.symlink(small_run / "data" / "processed", run / "data" / "processed")
    models_dir = run / "artifacts" / "models"
    models_dir.mkdir(parents=True)
    for path in (small_run / "artifacts" / "models").iterdir():
        if path.is_file():
            (models_dir / path.name).write_bytes(path.read_bytes())
    name = config.model_name(config.DEFAULT_ARCHITECTURE)
    lite = config.litert_path(name, "random", models_dir)
    lite.write_bytes(lite.read_bytes()[:1000])  # cut short: not the file its manifest records
    rec = Recommender.load(run / "data" / "processed", models_dir)
    with pytest.raises(Unusable, match="make export"):
        rec.top_for_liked(name, [1, 2])
    result = CliRunner().invoke(app, ["recommend", "--liked", "1,2", *dirs(run)])
    assert result.exit_code == 2
    assert "make export" in result.output and "Traceback" not in result.output
    lite.unlink()
    result = CliRunner().invoke(app, ["recommend", "--liked", "1,2", *dirs(run)])
    assert result.exit_code == 2 and "make export" in result.output


def test_export_refuses_an_unknown_model_or_variant_in_one_line(small_run):
    for args in (["--model", "nope"], ["--variant", "int4"]):
        result = CliRunner().invoke(app, ["export", *args, "--models-dir", str(small_run / "artifacts" / "models")])
        assert result.exit_code == 2 and "unknown" in result.output


def test_recommend_and_precompute_never_import_tensorflow(small_run, tmp_path):
    run_cli = """
        import contextlib, io, sys
        from pipeline.cli import app
        OUT = []
        for args in ARGS:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    app(args, prog_name="pipeline")
                except SystemExit as done:
                    OUT.append(done.code)
    """
    args = [
        ["recommend", "--liked", "1,2,3", *dirs(small_run)],
        ["recommend", "--user", "5", "--month", "2", *dirs(small_run)],
        ["recommend", "--user", "5", "--mode", "reference", "--architecture", "both", *dirs(small_run)],
    ]
    seen = imports_tensorflow(f"ARGS = {args!r}\n" + textwrap.dedent(run_cli), small_run)
    assert seen == {"heavy": [], "out": [0, 0, 0]}
    # precompute writes its tables through LiteRT too (into a copy of the run: the shared one stays as it is)
    copy = tmp_path / "run"
    (copy / "artifacts").mkdir(parents=True)
    (copy / "data").mkdir()
    os.symlink(small_run / "data" / "processed", copy / "data" / "processed")
    os.symlink(small_run / "artifacts" / "models", copy / "artifacts" / "models")
    seen = imports_tensorflow(f"ARGS = {[['precompute', *dirs(copy)]]!r}\n" + textwrap.dedent(run_cli), copy)
    assert seen == {"heavy": [], "out": [0]}
    assert len(pd.read_parquet(copy / "artifacts" / "precomputed" / f"{config.TWO_STAGE_MODELS[0]}.parquet")) > 0


def test_the_http_service_never_imports_tensorflow(small_run):
    code = """
        from fastapi.testclient import TestClient
        from pipeline import config
        from pipeline.serving.http_api import create_app
        OUT = []
        with TestClient(create_app(config.PROCESSED_DIR, config.MODELS_DIR)) as client:
            for method, path, body in [
                ("get", "/v1/health", None),
                ("get", "/v1/users/5/recommendations", None),
                ("get", "/v1/users/5/recommendations?month=3", None),
                ("get", "/v1/users/5/recommendations?mode=reference", None),
                ("post", "/v1/recommendations", {"liked": [1, 2, 3]}),
            ]:
                answer = client.request(method, path, json=body)
                items = answer.json().get("items", []) if answer.status_code == 200 else []
                OUT.append([answer.status_code, len(items)])
    """
    seen = imports_tensorflow(code, small_run)
    assert seen["heavy"] == []
    assert [status for status, _ in seen["out"]] == [200] * 5
    assert all(items == 10 for _, items in seen["out"][1:])


def test_the_web_page_never_imports_tensorflow(small_run):
    code = f"""
        from streamlit.testing.v1 import AppTest
        page = AppTest.from_file({str(REPO / "pipeline" / "serving" / "app.py")!r}, default_timeout=120)
        page.run()
        page.text_input[0].set_value("5")
        page.run()
        OUT = [bool(page.exception), len(page.table)]
    """
    seen = imports_tensorflow(code, small_run)
    assert seen == {"heavy": [], "out": [False, 1]}
