"""End to end in a real headless browser: the system's Chromium driven by Playwright (which never
downloads a browser of its own), against the app served on a free localhost port."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.processes import free_port, stop_process
from pipeline.serving.recommender import Recommender

REPO = Path(__file__).parent.parent
BROWSER = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not Path(BROWSER).exists() and not os.environ.get("CI"),
    reason="no system Chromium (apt-get install chromium); CI installs it",
)


def wait_for(port: int, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited: {server.stdout.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not listen on {port}")


def test_enter_a_user_and_see_the_cores_recommendations(small_run, tmp_path):
    from playwright.sync_api import sync_playwright  # here: a machine without it still collects the module

    rec = Recommender.load(small_run / "data" / "processed", small_run / "artifacts" / "models")
    expected = rec.recommend(7)["title"].tolist()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "pipeline" / "serving" / "app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        env={**os.environ, "ML_PIPELINE_ROOT": str(small_run)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(port, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=BROWSER, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}", timeout=60_000)
            user_box = page.get_by_label("User ID")
            user_box.wait_for(timeout=90_000)
            user_box.fill("7")
            user_box.press("Enter")
            page.get_by_text("User 7", exact=True).wait_for(timeout=90_000)
            page.get_by_text("Top 10 movies not yet rated").wait_for(timeout=90_000)
            recommendations = page.locator("[data-testid='stTable'] tbody tr")
            recommendations.first.wait_for(timeout=60_000)
            assert recommendations.count() == 10
            cells = [[cell.strip() for cell in row.inner_text().split("\t")] for row in recommendations.all()]
            assert [row[1] for row in cells] == expected
            page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
            # Kept for a person to look at when the test fails (pytest keeps tmp_path).
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            browser.close()
    finally:
        stop_process(server, timeout=20)
