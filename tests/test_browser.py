"""End to end in a real browser: JupyterLab runs the demo notebook, a PNG is uploaded through the
widget, and the predicted LaTeX appears in its text box.

The server runs on localhost with a token, in a temporary root folder with its own Jupyter config,
data, runtime and settings folders, so nothing of the user's is read or changed. Headless Chromium
(Debian's ``chromium``) is driven by Playwright. Screenshots go to ``test-output/browser/``; with
``IMG2LATEX_UPDATE_DOCS=1`` the widget's screenshot is also copied to ``docs/demo.png``.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from img2latex_lib.checkpoints import CheckpointError, default_checkpoint
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.formats import compact
from img2latex_lib.render import default_renderer
from tests.test_widgets import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "06_interactive_demo.ipynb"
OUTPUT_DIR = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UPLOAD_NAME = "browser-upload.png"
TIMEOUT_MS = 120_000

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jupyter_env(home: Path, checkpoint: Path | None) -> dict[str, str]:
    """The environment of a JupyterLab that reads and writes only under ``home``."""
    folders = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
               "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTERLAB_SETTINGS_DIR": "settings",
               "JUPYTERLAB_WORKSPACES_DIR": "workspaces", "IPYTHONDIR": "ipython"}
    env = {**os.environ, **{name: str(home / sub) for name, sub in folders.items()},
           "IMG2LATEX_QUICK": "1", "PYTHONPATH": str(ROOT)}
    if checkpoint is not None:
        env["IMG2LATEX_CHECKPOINT"] = str(checkpoint)
    notifications = home / "settings" / "@jupyterlab" / "apputils-extension"
    notifications.mkdir(parents=True)
    (notifications / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false"}))
    return env


def wait_for_server(url: str, token: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within 90 s; see {log}")


def stop_server(url: str, token: str, server: subprocess.Popen) -> None:
    """Shut the server down through its API (which also stops the kernel), else terminate it."""
    request = urllib.request.Request(f"{url}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
        server.wait(timeout=30)
    except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def jupyter(tmp_path):
    """A private JupyterLab serving a copy of the demo notebook; yields (url, token, checkpoint)."""
    try:
        checkpoint, env_checkpoint = default_checkpoint(), None
    except CheckpointError:  # no shipped model yet: a tiny random one is enough for the wiring
        checkpoint = env_checkpoint = tiny_checkpoint(tmp_path / "checkpoint")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    log = OUTPUT_DIR / "jupyter.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               "--ServerApp.terminals_enabled=False", "--expose-app-in-browser"]
    if os.geteuid() == 0:  # containers and CI often run as root
        command.append("--allow-root")
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
                                  env=jupyter_env(tmp_path / "jupyter", env_checkpoint))
    try:
        wait_for_server(url, token, server, log)
        yield url, token, checkpoint
    finally:
        stop_server(url, token, server)


RUN_ALL = """async () => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    await panel.sessionContext.ready;
    await app.commands.execute('notebook:run-all-cells');
    const problems = [];
    const cells = panel.content.model.cells;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        if (cell.executionCount === null) problems.push(`cell ${i} did not run`);
        for (let j = 0; j < cell.outputs.length; j++) {
            const output = cell.outputs.get(j);
            if (output.type === 'error') problems.push(`cell ${i}: ${output.toJSON().ename}`);
        }
    }
    return problems;
}"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
def test_upload_in_jupyterlab_shows_the_predicted_latex(jupyter, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, token, checkpoint = jupyter
    image = tmp_path / UPLOAD_NAME
    default_renderer().render(r"\frac { x ^ { 2 } } { 2 } + y").save(image)
    expected = compact(LatexProducer(checkpoint).predict(str(image)))

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell"
                                   " && document.querySelector('.jp-Notebook .jp-Cell')")
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext")
            assert page.evaluate(RUN_ALL) == []

            demo = page.locator(".img2latex-demo").last
            with page.expect_file_chooser() as chooser:  # the widget's <input> is off the DOM
                demo.locator(".img2latex-upload").click()
            chooser.value.set_files(str(image))
            message = demo.locator(".img2latex-message")
            page.wait_for_function(
                "name => [...document.querySelectorAll('.img2latex-message')].some(m =>"
                " m.innerText.startsWith(name + ': ') && !m.innerText.includes('predicting'))",
                arg=UPLOAD_NAME)
            assert f"{UPLOAD_NAME}: predicted with beam size 1" in message.inner_text()
            assert demo.locator(".img2latex-latex textarea").input_value() == expected
            demo.locator(".img2latex-copy-button").click()
            page.wait_for_function("() => document.querySelector('.img2latex-copy-button')"
                                   ".textContent === 'Copied'")
            assert page.evaluate("() => navigator.clipboard.readText()") == expected
            demo.locator(".img2latex-form button", has_text="$…$").click()
            page.wait_for_function(
                "want => document.querySelector('.img2latex-latex textarea').value === want",
                arg=f"${expected}$")
            demo.locator(".img2latex-rendered mjx-container").first.wait_for()
            assert demo.locator("img").evaluate("img => img.naturalWidth") > 0
            demo.scroll_into_view_if_needed()
            demo.screenshot(path=OUTPUT_DIR / "demo.png")
        finally:
            page.screenshot(path=OUTPUT_DIR / "page.png", full_page=True)
            browser.close()
    if os.environ.get("IMG2LATEX_UPDATE_DOCS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(OUTPUT_DIR / "demo.png", ROOT / "docs" / "demo.png")
