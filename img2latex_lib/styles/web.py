"""Web styles: KaTeX and MathJax as a browser shows them, in headless Chromium through Playwright.

One Chromium serves every web style of the process; it starts at the first batch, runs in a
thread of its own (Playwright's synchronous API refuses a thread with a running asyncio loop, as
in Jupyter) and closes at exit. A batch is typeset on one page, formula below formula, and cut
out of one screenshot per band of the page. The page is offline: it loads only the engine's own
files (Debian's libjs-katex, libjs-mathjax), served from disk, and every other request is refused.
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import mimetypes
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..render import Renderer, RenderError, RenderResult, check_formula, shrink
from ..tokenizer import to_latex

__all__ = ["WebRenderer", "close_browser", "web_missing"]

#: Where the engines' files are looked for (Debian's packages; the variable overrides).
ENGINE_DIRS = {
    "katex": ("IMG2LATEX_KATEX_DIR", Path("/usr/share/javascript/katex"), "katex.min.js",
              "libjs-katex"),
    "mathjax": ("IMG2LATEX_MATHJAX_DIR", Path("/usr/share/javascript/mathjax"), "MathJax.js",
                "libjs-mathjax"),
}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
_ORIGIN = "http://img2latex.invalid"
_PAD = 24  # CSS px of white around each formula on the page (ink may overhang its box)
_MAX_BAND = 16_000_000  # device pixels per screenshot
# Control words the web engines would act on beyond typesetting (links, classes, extensions).
_WEB_DENIED = frozenset("require href url class style cssId htmlClass htmlId htmlStyle htmlData "
                        "includegraphics".split())
_CONTROL_WORD = re.compile(r"\\([A-Za-z]+)")

_STYLE = "body{margin:0;background:#fff;color:#000;font-family:serif;font-size:%spx}" \
    ".f{display:table;padding:%dpx}.katex-display{margin:0}.MathJax_CHTML_Display," \
    ".MathJax_Display{margin:0!important;text-align:left!important}"
_PAGES = {
    "katex": """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/engine/katex.min.css"><script src="/engine/katex.min.js"></script>
<style>{style}</style></head><body><div id="out"></div></body></html>""",
    "mathjax": """<!doctype html><html><head><meta charset="utf-8">
<script type="text/x-mathjax-config">MathJax.Hub.Config({{skipStartupTypeset: true,
 messageStyle: "none", showMathMenu: false, showProcessingMessages: false,
 extensions: ["Safe.js"], "fast-preview": {{disabled: true}},
 CommonHTML: {{matchFontHeight: false, scale: 100, linebreaks: {{automatic: false}}}},
 TeX: {{noErrors: {{disabled: true}}, noUndefined: {{disabled: true}},
       Macros: {{dag: "\\dagger", ddag: "\\ddagger"}}}}}});</script>
<script src="/engine/MathJax.js?config=TeX-AMS_CHTML"></script>
<style>{style}</style></head><body><div id="out"></div></body></html>""",
}
_TYPESET = {
    "katex": """(formulas) => { const out = document.getElementById('out'); out.textContent = '';
  return formulas.map((f) => { const d = document.createElement('div'); d.className = 'f';
    out.appendChild(d);
    try { katex.render(f, d, {displayMode: true, throwOnError: true, strict: 'ignore',
                              trust: false, output: 'html', maxExpand: 1000});
          return null; }
    catch (e) { d.textContent = ''; return String(e.message || e); } }); }""",
    "mathjax": """async (formulas) => { const out = document.getElementById('out');
  out.textContent = ''; const divs = formulas.map((f) => { const d = document.createElement('div');
    d.className = 'f'; const s = document.createElement('script');
    s.type = 'math/tex; mode=display'; s.text = f; d.appendChild(s); out.appendChild(d);
    return d; });
  await new Promise((done) => MathJax.Hub.Queue(['Typeset', MathJax.Hub, out], done));
  return divs.map((d) => { const e = d.querySelector('.mjx-merror, .MathJax_Error, merror');
    if (e) { const m = e.getAttribute('title') || e.textContent; d.textContent = ''; return m; }
    return null; }); }""",
}
_BOXES = """async () => { await document.fonts.ready;
  return Array.from(document.querySelectorAll('#out > .f')).map((d) => {
    const r = d.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }); }"""
_READY = {"katex": "typeof katex !== 'undefined'",
          "mathjax": "window.MathJax && MathJax.isReady === true"}


def engine_dir(engine: str) -> Path | None:
    """The folder with the engine's files, or None when they are not installed."""
    variable, default, marker, _ = ENGINE_DIRS[engine]
    folder = Path(os.environ.get(variable, default))
    return folder if (folder / marker).is_file() else None


def chromium_path() -> str | None:
    """The Chromium executable (``IMG2LATEX_CHROMIUM``, else chromium on PATH), or None."""
    configured = os.environ.get("IMG2LATEX_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def web_missing(engine: str) -> str | None:
    """Why the `engine` ("katex" or "mathjax") style cannot render here, or None if it can."""
    lacking = []
    if importlib.util.find_spec("playwright") is None:  # found, not imported: --help stays fast
        lacking.append("the Python package playwright (pip install playwright)")
    if chromium_path() is None:
        lacking.append("Chromium (Debian chromium)")
    if engine_dir(engine) is None:
        lacking.append(f"{engine} (Debian {ENGINE_DIRS[engine][3]})")
    return f"needs {' and '.join(lacking)}" if lacking else None


@dataclass
class _Page:
    page: Any
    context: Any


class _Browser:
    """The process's one Chromium, driven from one thread; pages kept per (engine, scale, size)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="img2latex-chromium",
                                        daemon=True)
        self._thread.start()
        self._playwright: Any = None
        self._browser: Any = None
        self._pages: dict[tuple, _Page] = {}

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, function, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as error:  # handed to the caller, who re-raises it
                    future.set_exception(error)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` in the browser's thread and return its result."""
        if not self._thread.is_alive():
            raise RenderError("the browser thread has stopped")
        future: Future = Future()
        self._jobs.put((future, function, args))
        return future.result()

    def page(self, engine: str, scale: float, size_px: float) -> Any:
        """A ready page for the engine (in the browser's thread only)."""
        key = (engine, scale, size_px)
        if key in self._pages:
            return self._pages[key].page
        if self._browser is None:
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS)
        context = self._browser.new_context(device_scale_factor=scale,
                                            viewport={"width": 1600, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        html = _PAGES[engine].format(style=_STYLE % (size_px, _PAD))
        page.route("**/*", _serve(html, engine_dir(engine)))
        page.goto(f"{_ORIGIN}/page.html")
        page.wait_for_function(_READY[engine])
        self._pages[key] = _Page(page, context)
        return page

    def drop(self, engine: str, scale: float, size_px: float) -> None:
        """Forget a page that failed (in the browser's thread)."""
        entry = self._pages.pop((engine, scale, size_px), None)
        if entry is not None:
            try:
                entry.context.close()
            except Exception:  # a page that crashed may not close cleanly; it is dropped anyway
                pass

    def close(self) -> None:
        """Close Chromium and stop the thread."""

        def stop() -> None:
            for entry in self._pages.values():
                entry.context.close()
            self._pages.clear()
            if self._browser is not None:
                self._browser.close()
                self._playwright.stop()
            self._browser = self._playwright = None

        try:
            self.call(stop)
        finally:
            self._jobs.put(None)


_shared: _Browser | None = None
_shared_lock = threading.Lock()


def _browser() -> _Browser:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _Browser()
            atexit.register(close_browser)
        return _shared


def close_browser() -> None:
    """Close the shared Chromium now (the next web batch starts a new one)."""
    global _shared
    with _shared_lock:
        browser, _shared = _shared, None
    if browser is not None:
        browser.close()


def _serve(html: str, root: Path | None) -> Callable[[Any], None]:
    """A Playwright route handler: the page itself and files under `root`; nothing else."""

    def handle(route: Any) -> None:
        url = route.request.url
        if not url.startswith(_ORIGIN + "/"):
            route.abort()
            return
        path = url[len(_ORIGIN) + 1 :].split("?", 1)[0].split("#", 1)[0]
        if path == "page.html":
            route.fulfill(body=html, content_type="text/html")
            return
        parts = path.split("/")
        if root is None or parts[0] != "engine" or any(p in ("", ".", "..") for p in parts[1:]):
            route.abort()
            return
        file = root.joinpath(*parts[1:])
        if not file.is_file():
            route.abort()
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        route.fulfill(body=file.read_bytes(), content_type=kind)

    return handle


class WebRenderer(Renderer):
    """Render formulas with KaTeX or MathJax 2 (CommonHTML output) in headless Chromium.

    engine: "katex" or "mathjax". size_px: the page's font size in CSS px (KaTeX draws formulas
    1.21 times larger, MathJax at that size). dpi: 96 is a browser at 100 % (device pixel ratio
    dpi / 96). mode: "antialias", "coverage" (drawn at twice the scale, every touched pixel ink,
    then halved) or "mono". Formulas pass `check_formula` first, and links, classes, styles and
    ``\\require`` are refused. Images are "L", ink cut out with a 4-pixel margin.
    """

    def __init__(self, engine: str, size_px: float = 16.0, dpi: int = 96,
                 mode: str = "antialias", chunk: int = 50) -> None:
        if engine not in _PAGES:
            raise ValueError(f"web engine {engine!r}: use katex or mathjax")
        reason = web_missing(engine)
        if reason is not None:
            raise RenderError(f"the {engine} style {reason}")
        self.engine = engine
        self.size_px = size_px
        self.dpi = dpi
        self.mode = mode
        self.chunk = chunk

    def close(self) -> None:
        """Close the shared Chromium (the next web batch of any style starts it again)."""
        close_browser()

    @property
    def scale(self) -> float:
        """Chromium's device pixel ratio."""
        return self.dpi / 96 * (2 if self.mode == "coverage" else 1)

    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """Render every formula; bad ones come back with `error` set."""
        results = [RenderResult(f, None, None) for f in formulas]
        todo: list[tuple[int, str]] = []
        for i, formula in enumerate(formulas):
            try:
                line = check_formula(formula)
            except RenderError as error:
                results[i].error = str(error)
                continue
            denied = [w for w in _CONTROL_WORD.findall(line) if w in _WEB_DENIED]
            if denied:
                results[i].error = f"\\{denied[0]} is not allowed in a formula: {line[:60]!r}"
                continue
            todo.append((i, to_latex(line)))
        browser = _browser()
        for start in range(0, len(todo), self.chunk):
            group = todo[start : start + self.chunk]
            try:
                done = browser.call(self._typeset, browser, [f for _, f in group])
            except Exception as error:  # a crashed or hung page fails this group, not the batch
                browser.call(browser.drop, self.engine, self.scale, self.size_px)
                message = f"{self.engine} in Chromium failed: {str(error).splitlines()[0]}"
                done = [(None, message)] * len(group)
            for (i, _), (image, error_text) in zip(group, done, strict=True):
                results[i].image, results[i].error = image, error_text
        return results

    def _typeset(self, browser: _Browser, formulas: list[str]):
        """Typeset one group on the page and cut each formula out (in the browser's thread)."""
        page = browser.page(self.engine, self.scale, self.size_px)
        errors = page.evaluate(_TYPESET[self.engine], formulas)
        boxes = page.evaluate(_BOXES)
        out: list[tuple[Image.Image | None, str | None]] = [(None, e) for e in errors]
        bands = _bands([b for b, e in zip(boxes, errors, strict=True) if e is None], self.scale)
        ok = [k for k, e in enumerate(errors) if e is None]
        for top, bottom, right, members in bands:
            shot = page.screenshot(clip={"x": 0, "y": top, "width": right, "height": bottom - top},
                                   full_page=True, animations="disabled", caret="hide")
            band = np.asarray(Image.open(io.BytesIO(shot)).convert("L"))
            for member in members:
                k = ok[member]
                out[k] = self._cut(band, boxes[k], top)
        return out

    def _cut(self, band: np.ndarray, box: list[float], top: float):
        left, upper, right, lower = (round(v * self.scale) for v in
                                     (box[0], box[1] - top, box[2], box[3] - top))
        gray = band[max(0, upper) : lower, max(0, left) : right]
        ink = gray < 255
        if not ink.any():
            return None, "formula renders nothing (empty image)"
        if ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any():
            return None, "ink reaches far outside the formula's box (clipped)"
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        if self.mode == "mono":
            gray = np.where(gray < 128, 0, 255).astype(np.uint8)
        factor = 1
        if self.mode == "coverage":
            gray, factor = np.where(gray < 255, 0, 255).astype(np.uint8), 2
        return shrink(np.pad(gray, 4 * factor, constant_values=255), factor), None


def _bands(boxes: list[list[float]], scale: float) -> list[tuple[float, float, float, list[int]]]:
    """Group formula boxes (top to bottom) into screenshot bands of at most `_MAX_BAND` pixels."""
    bands: list[tuple[float, float, float, list[int]]] = []
    for k, (_, upper, right, lower) in enumerate(boxes):
        if bands:
            top, bottom, width, members = bands[-1]
            new_width = max(width, right)
            if (lower - top) * new_width * scale * scale <= _MAX_BAND:
                bands[-1] = (top, max(bottom, lower), new_width, [*members, k])
                continue
        bands.append((upper, lower, right, [k]))
    return [(top, bottom, float(np.ceil(width)), members)
            for top, bottom, width, members in bands]
