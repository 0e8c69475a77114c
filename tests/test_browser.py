"""The course in a real browser (Debian's Chromium driven by Playwright), offline.

- The built book: every page loads with no failed request and nothing from another host;
  math is typeset; every widget and plot is visible. Screenshots go to test-artifacts/.
- JupyterLab: chapter 1's solved notebook runs all cells, the logit-lens explorer renders
  and reacts to a new prompt.

`make test` installs Chromium (apt) and builds the book first. Without Chromium these
tests skip, saying so.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from course.build.source import chapter_slugs
from course.build.targets import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
SITE = ROOT / "book" / "_build" / "html"
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; make test does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site():
    if not (SITE / "index.html").exists():
        from course.build.book import build
        build()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


PAGES = ["index.html", "setup.html", "how_to_use.html"] + [f"chapters/{slug}.html" for slug in chapter_slugs()]


def _widget_views(page) -> list[dict]:
    """The page's widget views, each marked whether it is a tqdm progress bar (an HBox holding a
    FloatProgress): a bar is printed output of a training loop, not one of the course's explorers."""
    state_script = page.locator('script[type="application/vnd.jupyter.widget-state+json"]')
    state = json.loads(state_script.first.text_content())["state"] if state_script.count() else {}

    def progress_bar(model_id: str) -> bool:
        model = state.get(model_id, {})
        children = model.get("state", {}).get("children", []) if model.get("model_name") == "HBoxModel" else []
        return any(state.get(c.removeprefix("IPY_MODEL_"), {}).get("model_name") == "FloatProgressModel"
                   for c in children)

    views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').all_text_contents()
    return [{"model_id": m, "progress_bar": progress_bar(m)} for m in (json.loads(v)["model_id"] for v in views)]


@pytest.mark.parametrize("page_path", PAGES)
def test_book_page_is_self_contained_and_complete(browser, site, page_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, failed = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} (HTTP {r.status})"))
    page.goto(f"{site}/{page_path}", wait_until="networkidle")
    is_chapter = page_path.startswith("chapters/")
    if is_chapter:
        page.wait_for_selector("mjx-container", timeout=30_000)                 # MathJax ran
        page.wait_for_selector(".course-explorer", state="visible", timeout=30_000)
        page.wait_for_load_state("networkidle")
        views = len([v for v in _widget_views(page) if not v["progress_bar"]])
        explorers = page.locator(".course-explorer")
        assert views > 0 and explorers.count() == views, "every widget on the page renders"
        for i in range(explorers.count()):
            box = explorers.nth(i).bounding_box()
            assert box and box["width"] > 100 and box["height"] > 50
        images = page.locator(".cell_output img")
        assert images.count() > 0
        for i in range(images.count()):
            assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
        assert "\\(" not in page.locator("article").inner_text()[:20000] or page.locator("mjx-container").count() > 0
    page.screenshot(path=str(ARTIFACTS / f"book-{page_path.replace('/', '-')}.png"), full_page=True)
    outside = [u for u in requests if not u.startswith(site) and not u.startswith(("data:", "blob:", "about:"))]
    assert not outside, f"requests to other hosts: {outside[:5]}"
    assert not failed, f"failed requests: {failed[:5]}"
    page.close()


def test_book_chapter_widget_state_shows_the_logit_lens(browser, site):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{site}/chapters/ch1_residual_stream.html", wait_until="networkidle")
    table = page.locator("table.logit-lens").first
    table.wait_for(state="visible", timeout=30_000)
    from course.data.facts import countries
    assert repr(countries()[0].name[:3])[1:4] in table.inner_text() or table.locator("td").count() > 3
    assert table.locator("td").count() >= 3 * 4                    # depth x position cells
    page.close()


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    port, token = free_port(), secrets.token_hex(16)
    # Render every cell: JupyterLab's default windowing draws only cells near the viewport,
    # and a widget whose cell was drawn late sometimes never showed (a flaky test).
    settings = tmp_path_factory.mktemp("lab-settings")
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
         "--LabApp.news_url=", "--ServerApp.disable_check_xsrf=True", "--LabApp.expose_app_in_browser=True",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield base, token
    try:   # shut the server (and its kernels) down cleanly, then make sure
        req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(req, timeout=10)
        proc.wait(timeout=20)
    except Exception:
        os.killpg(proc.pid, 9)


NOTEBOOK = "solutions/notebooks/ch1_residual_stream.ipynb"

# Every code cell shows "[n]:" once it has run; "[ ]:" (never run) and "[*]:" (running) do not count.
ALL_CELLS_RAN = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 10 && prompts.every(p => /\\[\\d+\\]/.test(p.innerText));
}"""
# A run has begun once some code cell shows "[*]:" (queued or running) or "[n]:".
RUN_STARTED = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
  .some(p => /\\[(\\*|\\d+)\\]/.test(p.innerText))"""


def kernel_state(base: str, token: str, path: str) -> str | None:
    """The execution state of the kernel of the notebook at `path`, or None before it has one."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
        for session in json.load(r):
            if session.get("path") == path and session.get("kernel"):
                return session["kernel"].get("execution_state")
    return None


def test_jupyterlab_runs_chapter_1_and_the_logit_lens_reacts(browser, jupyterlab):
    base, token = jupyterlab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console: list[str] = []
    page.on("console", lambda m: m.type in ("error", "warning") and console.append(f"{m.type}: {m.text}"[:300]))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"[:300]))

    def diagnose(what: str) -> str:
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-ch1-failed.png"), full_page=True)
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        outputs = cell.locator(".jp-OutputArea").all_inner_texts() if cell is not None else []
        return (f"{what}\nkernel: {kernel_state(base, token, NOTEBOOK)}\nprompts: {prompts}\n"
                f"explorer cell output: {outputs}\nbrowser console: {console[-15:]}")

    cell = None
    page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    # Run only once the notebook's kernel is up and idle: the toolbar's status is not a reliable sign.
    deadline = time.monotonic() + 120
    while kernel_state(base, token, NOTEBOOK) != "idle":
        assert time.monotonic() < deadline, diagnose("the notebook's kernel was not idle within 120 s")
        time.sleep(0.5)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    try:   # a click that lands while JupyterLab is still settling can be lost: then run through its command
        page.wait_for_function(RUN_STARTED, timeout=30_000)
    except Exception:
        warnings.warn(diagnose("'Run All Cells' from the menu started nothing in 30 s; ran the command instead"))
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    try:
        page.wait_for_function(ALL_CELLS_RAN, timeout=240_000)
    except Exception:
        pytest.fail(diagnose("not every code cell ran within 240 s"))
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                        has_text="Traceback").count() == 0, diagnose("a cell raised")
    cell = page.locator(".jp-CodeCell", has_text="LogitLensExplorer(model").first
    cell.scroll_into_view_if_needed()
    explorer = cell.locator(".course-explorer")
    try:
        explorer.wait_for(state="visible", timeout=60_000)
    except Exception:
        # Seen once in CI, never reproduced here: the cell ran but no widget showed. A student would
        # run the cell again, so the test does too, once; the warning keeps what was seen.
        warnings.warn(diagnose("the logit-lens explorer did not appear within 60 s; running its cell again"))
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        try:
            explorer.wait_for(state="visible", timeout=60_000)
        except Exception:
            pytest.fail(diagnose("the logit-lens explorer did not appear, even after running its cell again"))
    table = explorer.locator("table.logit-lens")
    table.wait_for(state="visible", timeout=60_000)
    before = table.inner_text()
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-ch1-before.png"))
    box = explorer.locator("input[type='text']").first
    box.fill("calc: 12 + 34 =")
    box.press("Enter")
    # The explorer redraws its table: wait until its header holds the new prompt's tokens.
    try:
        page.wait_for_function("() => [...document.querySelectorAll('.course-explorer table.logit-lens')]"
                               ".some(t => t.rows[0].innerText.includes(\"'calc'\"))", timeout=60_000)
    except Exception:
        pytest.fail(diagnose("the explorer did not redraw for a new prompt within 60 s"))
    assert explorer.locator("table.logit-lens").inner_text() != before
    cell.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-ch1-after.png"))
    page.close()
