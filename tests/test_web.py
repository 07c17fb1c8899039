"""The web page (``web/``): its JavaScript held to the library under Node (balance constraint,
preprocessing, compact LaTeX), and the built page in headless Chromium held to the ONNX
runtime's predictions, for images given through the file input, pasted and dropped.

The page test builds ``web/dist`` with ``web/build.sh`` (npm ci the first time, the model export
when the checkpoint is newer) and serves it on 127.0.0.1. Its screenshot goes to
``test-output/web/``; with ``IMG2LATEX_UPDATE_DOCS=1`` also to ``docs/web-page.png``.
"""

import base64
import contextlib
import functools
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from img2latex_lib.constraints import BalanceConstraint
from img2latex_lib.formats import compact
from img2latex_lib.preprocess import ImageError, prepare_image
from img2latex_lib.render import default_renderer
from img2latex_lib.search import StepDecoderBase, greedy
from img2latex_lib.synth import generate_formulas
from img2latex_lib.tokenizer import EOS_ID, Vocab

ROOT = Path(__file__).resolve().parents[1]
WEB, CHECKPOINT = ROOT / "web", ROOT / "checkpoints" / "img2latex-base"
DIST, HARNESS = WEB / "dist", ROOT / "tests" / "js" / "harness.mjs"
OUTPUT_DIR = ROOT / "test-output" / "web"
NODE, NPM = shutil.which("node"), shutil.which("npm")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 120_000
FORMULAS = [r"\frac { x ^ { 2 } } { 2 } + y", r"\sum _ { i = 1 } ^ { n } i ^ { 2 }",
            r"\sqrt { a + b } \leq \alpha", r"\int _ { 0 } ^ { 1 } f ( x ) d x",
            r"\left( \begin{array} { c c } { a } & { b } \\ { c } & { d } \end{array} \right)"]
#: The model.json settings of the shipped model that preprocessing reads.
MODEL_INPUT = {key: json.loads((CHECKPOINT / "config.json").read_text())[name] for key, name in
               {"input_height": "image_height", "max_width": "max_width",
                "width_step": "width_step"}.items()}

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (setup.sh "
                                                     "installs nodejs)")


def run_node(job: str, payload) -> object:
    """The result of one job of ``tests/js/harness.mjs``, run by Node on the page's modules."""
    result = subprocess.run([NODE, str(HARNESS), job], input=json.dumps(payload),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.load(CHECKPOINT / "vocab.json")


@pytest.fixture(scope="module")
def formula_images() -> list[Image.Image]:
    renderer = default_renderer()
    return [renderer.render(formula) for formula in FORMULAS]


# --- the balance constraint -------------------------------------------------------------------

class BankDecoder(StepDecoderBase):
    """A step decoder whose log-probabilities come from a bank of random rows (``indices``: which
    row each sequence gets at each step), run by the library's own ``greedy``; records, per step,
    which tokens the constraint ruled out (-inf)."""

    def __init__(self, bank: np.ndarray, indices: np.ndarray, constraint: BalanceConstraint):
        super().__init__(constraint)
        self.bank, self.indices, self.ruled_out = bank, indices, []

    def encode(self, images, repeat=1):
        return None

    def initial_state(self, batch):
        return 0  # the step number

    def select(self, state, rows):
        return state

    def _raw_step(self, tokens, state, memory):
        return self.bank[self.indices[:, state]], state + 1, np.zeros((len(tokens), 1))

    def step(self, *args, **kwargs):
        log_probs, state, attention = super().step(*args, **kwargs)
        self.ruled_out.append(np.isneginf(log_probs))
        return log_probs, state, attention


def structured_bank(vocab: Vocab, rng: np.random.Generator, rows: int = 256) -> np.ndarray:
    """Random logits [rows, V] in which a few structural tokens (braces, delimiters,
    environments, array specs, tabs, scripts, <eos>) win, so that greedy decoding opens and
    closes things and the constraint has work at every step."""
    constraint = BalanceConstraint(vocab)
    structural = np.flatnonzero((constraint.opens > 0) | (constraint.closes > 0) | constraint.tab
                                | constraint.row_end | constraint.spec | constraint.sup
                                | constraint.sub | constraint.prime)
    bank = rng.normal(0.0, 1.0, (rows, len(vocab))).astype(np.float32)
    for row in bank:
        row[rng.choice(structural, size=8, replace=False)] += rng.uniform(2.0, 6.0, size=8)
        if rng.random() < 0.15:
            row[EOS_ID] += 6.0
        if rng.random() < 0.4:  # array specs ({ c c }) and scripts' arguments
            row[vocab.token_to_id["{"]] += 4.0
    return bank


@needs_node
@pytest.mark.parametrize("max_len", [150, 40, 12])
def test_js_balance_constraint_makes_the_python_choices(vocab, max_len):
    rng = np.random.default_rng(max_len)
    bank = structured_bank(vocab, rng)
    indices = rng.integers(len(bank), size=(80, max_len + 1))
    decoder = BankDecoder(bank, indices, BalanceConstraint(vocab))
    expected = greedy(decoder, np.zeros(len(indices)), max_len)
    results = run_node("constraint", {"vocabulary": vocab.id_to_token, "bank": bank.tolist(),
                                      "indices": indices.tolist(), "maxLen": max_len})
    steps = 0
    for row, (ids, result) in enumerate(zip(expected, results, strict=True)):
        assert result["ids"] == ids, f"sequence {row}"
        assert len(result["ruledOut"]) == len(ids) + 1
        for step, mask in enumerate(result["ruledOut"]):
            assert mask == np.packbits(decoder.ruled_out[step][row]).tobytes().hex(), \
                f"sequence {row}, step {step}"
        steps += len(result["ruledOut"])
    tokens = {vocab.id_to_token[i] for ids in expected for i in ids}
    assert {"\\begin{array}", "&", "\\\\", "^", "_", "{", "}", "\\left("} <= tokens
    print(f"max_len {max_len}: JS and Python agree on all {len(expected)} sequences, {steps} "
          f"steps (tokens chosen and the tokens ruled out at each)")


#: Prefixes at the constraint's edges (array specs at the top level and nested, brace groups
#: of spec tokens, full rows, scripts, primes), each tried at the top level and inside others.
FRAGMENTS = [
    [], ["x"], ["x", "^"], ["x", "^", "{", "2", "}"], ["x", "^", "{", "2", "}", "_"], ["x", "'"],
    ["x", "_", "{", "i", "}", "'"], [r"\begin{array}"], [r"\begin{array}", "{"],
    [r"\begin{array}", "{", "c"], [r"\begin{array}", "{", "p"], [r"\begin{array}", "{", "*"],
    [r"\begin{array}", "{", "p", "{", "3"], [r"\begin{array}", "{", "*", "{", "2", "}"],
    [r"\begin{array}", "{", "c", "c", "}"], [r"\begin{array}", "{", "c", "c", "}", "x", "&"],
    [r"\begin{array}", "{", "c", "c", "}", "x", "&", "x", "\\\\", "x"],
    [r"\begin{array}", "{", "c", "}", "{", "x"], [r"\begin{matrix}", "x", "&"],
    [r"\left(", "x"], [r"\begin{cases}", r"\left(", "x"],
]
WRAPPERS = [[], ["{"], [r"\left("], [r"\begin{array}", "{", "c", "c", "}"], ["{", "{"]]


@needs_node
def test_js_balance_constraint_state_and_rules_at_the_edges(vocab):
    constraint = BalanceConstraint(vocab)
    ids = vocab.token_to_id
    cases = [{"prefix": [ids[t] for t in wrapper + fragment], "wants": ids[wants], "room": room}
             for wrapper in WRAPPERS for fragment in FRAGMENTS for wants in ("x", "<eos>")
             for room in (None, 1, 2, 3, 4, 5, 6, 7, 9)]
    results = run_node("states", {"vocabulary": vocab.id_to_token, "cases": cases})
    for case, result in zip(cases, results, strict=True):
        opened = constraint.nothing_open(1)
        for token in case["prefix"]:
            opened = constraint.update(opened, np.array([token]), xp=np)
        logits = np.zeros((1, len(vocab)), np.float32)
        logits[0, case["wants"]] = 1.0
        blocked = constraint.penalty(opened, logits, xp=np, room=case["room"])[0] < 0
        where = f"{vocab.decode(case['prefix'])!r}, room {case['room']}"
        assert result["opened"] == opened[0].tolist(), where
        assert result["ruledOut"] == np.packbits(blocked).tobytes().hex(), where

# --- preprocessing ----------------------------------------------------------------------------

def variants(image: Image.Image) -> dict[str, Image.Image]:
    """The same formula as users' images come: scaled up (Pillow then reduces before Lanczos)
    and down, too wide for the model, light on dark, coloured, faint, with transparency."""
    w, h = image.size
    wide = Image.new("L", (w * 20, h), 255)
    for k in range(20):
        wide.paste(image, (k * w, 0))
    ink = ImageOps.invert(image)
    rounded = Image.new("L", image.size, 0)
    ImageDraw.Draw(rounded).rounded_rectangle((0, 0, w - 1, h - 1), radius=min(w, h) // 3,
                                              fill=255)
    return {
        "as rendered": image,
        "scaled 10x": image.resize((w * 10, h * 10), Image.Resampling.BICUBIC),
        "scaled 14x": image.resize((w * 14, h * 14), Image.Resampling.NEAREST),
        "scaled 6.7x": image.resize((round(w * 6.7), round(h * 6.7)), Image.Resampling.BILINEAR),
        "scaled 0.6x": image.resize((round(w * 0.6), round(h * 0.6)), Image.Resampling.LANCZOS),
        "too wide": wide,
        "light on dark": ink,
        "coloured": Image.composite(Image.new("RGB", image.size, (30, 60, 160)),
                                    Image.new("RGB", image.size, (250, 240, 200)), ink),
        "faint": image.point(lambda v: 150 + round(v * 0.35)),
        "transparent page": Image.merge("RGBA", [Image.new("L", image.size, 0)] * 3 + [ink]),
        "rounded corners": Image.merge("RGBA", [image] * 3 + [rounded]),
    }


@needs_node
def test_js_preprocessing_gives_the_python_model_input(formula_images, tmp_path):
    cases = {"blank": Image.new("L", (60, 30), 255)}
    for k, image in enumerate(formula_images):
        cases.update({f"{name} {k}": variant for name, variant in variants(image).items()})
    images = []
    for k, image in enumerate(cases.values()):
        path = tmp_path / f"{k}.rgba"
        path.write_bytes(image.convert("RGBA").tobytes())
        images.append({"path": str(path), "width": image.width, "height": image.height})
    results = run_node("preprocess", {"model": MODEL_INPUT, "images": images})
    for (name, image), result in zip(cases.items(), results, strict=True):
        try:
            expected = prepare_image(image, height=MODEL_INPUT["input_height"],
                                     max_width=MODEL_INPUT["max_width"],
                                     width_step=MODEL_INPUT["width_step"])[:, :, 0]
        except ImageError as error:
            assert "blank image" in str(error) and "blank image" in result["error"], name
            continue
        assert "error" not in result, f"{name}: {result.get('error')}"
        ours = np.frombuffer(base64.b64decode(result["data"]), np.float32)
        assert result["width"] == expected.shape[1], name
        assert np.array_equal(ours.reshape(expected.shape), expected), \
            f"{name}: {np.mean(ours != expected.ravel()):.2%} of pixels differ"
    print(f"JS preprocessing gives Python's model input, bit for bit, on {len(cases)} images")


@needs_node
def test_js_compact_latex_is_the_python_one():
    formulas = [*FORMULAS, *generate_formulas(300, seed=3), r"\hspace { 0 . 4 i n } x",
                r"\kern - 1 m u \alpha x", r"f ' ' ^ { 2 } - - x", r"a \, \\ b \ c \{ d \}"]
    assert run_node("compact", {"formulas": formulas}) == [compact(f) for f in formulas]


# --- the page in Chromium ---------------------------------------------------------------------

def build() -> Path:
    """``web/dist``, built (or brought up to date) by ``web/build.sh``."""
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(["bash", str(WEB / "build.sh")], capture_output=True, text=True,
                            env=env, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"web/build.sh failed:\n{result.stderr[-3000:]}")
    return DIST


@pytest.fixture(scope="module")
def dist() -> Path:
    if NODE is None or NPM is None:
        pytest.skip("node and npm are needed to build web/dist (setup.sh installs them)")
    return build()


@contextlib.contextmanager
def served(folder: Path):
    """The URL of ``folder`` served over HTTP on 127.0.0.1 by a thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser, url: str):
    """The page at ``url``, the model loaded; and the seconds that took."""
    context = browser.new_context(viewport={"width": 900, "height": 640})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_function("() => document.getElementById('status').dataset.state !== 'loading'")
    assert page.get_attribute("#status", "data-state") == "ready", \
        f"{page.inner_text('#status')} {errors}"
    return page, time.perf_counter() - start


def wait_for_prediction(page, count: int) -> dict:
    """The ``count``-th prediction's tokens, LaTeX, status and milliseconds, once shown."""
    page.wait_for_function(
        "n => Number(document.getElementById('status').dataset.predictions) >= n", arg=count)
    return {"tokens": page.get_attribute("#latex", "data-tokens"),
            "latex": page.input_value("#latex"), "status": page.inner_text("#status"),
            "ms": float(page.get_attribute("#prediction-time", "data-ms") or "nan")}


def predict_file(page, path: Path, count: int) -> dict:
    page.set_input_files("#file", str(path))
    return wait_for_prediction(page, count)


PASTE = """async bytes => {
    const blob = new Blob([new Uint8Array(bytes)], {type: 'image/png'});
    await navigator.clipboard.write([new ClipboardItem({'image/png': blob})]);
}"""


def predict_pasted(page, path: Path, count: int) -> dict:
    """Put the image on the clipboard and press Ctrl+V in the page, as a user pastes it."""
    page.evaluate(PASTE, list(path.read_bytes()))
    page.locator("body").press("Control+V")
    return wait_for_prediction(page, count)


DROP = """bytes => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'}));
    return data;
}"""


def predict_dropped(page, path: Path, count: int) -> dict:
    """Drop the image file on the page's drop zone."""
    data = page.evaluate_handle(DROP, list(path.read_bytes()))
    page.dispatch_event("#drop", "drop", {"dataTransfer": data})
    return wait_for_prediction(page, count)


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                    reason="playwright is not installed (pip install -e '.[dev]')")
def test_page_predicts_as_the_python_onnx_runtime(dist, formula_images, tmp_path):
    from playwright import sync_api

    from img2latex_lib.runtime import OnnxProducer

    paths = []
    for k, image in enumerate(formula_images):
        paths.append(tmp_path / f"formula-{k}.png")
        image.save(paths[-1])
    expected = OnnxProducer(dist / "model").predict([str(p) for p in paths])
    pasted = [paths[1], paths[4]]  # the last one is in the screenshot
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with served(dist) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page, load_seconds = open_page(browser, url)
            results = [predict_file(page, path, k + 1) for k, path in enumerate(paths)]
            results += [predict_pasted(page, path, len(paths) + k + 1)
                        for k, path in enumerate(pasted)]
            page.click("#copy")
            copied = page.evaluate("() => navigator.clipboard.readText()")
            rendered = page.locator("#rendered .katex").count()
            errors = page.locator("#rendered .katex-error").count()
            page.screenshot(path=OUTPUT_DIR / "page.png")
            page_load_ms = float(page.get_attribute("#load-time", "data-ms"))
            dropped = predict_dropped(page, paths[2], len(results) + 1)
            (tmp_path / "notes.png").write_text("not an image")
            refused = predict_file(page, tmp_path / "notes.png", len(results) + 2)
        finally:
            browser.close()
    wanted = expected + [expected[paths.index(p)] for p in pasted] + [expected[2]]
    for path, result, tokens in zip(paths + pasted + paths[2:3], results + [dropped], wanted,
                                    strict=True):
        assert result["tokens"] == tokens, f"{path.name}: {result['status']}"
        assert result["latex"] == compact(tokens)
    assert copied == results[-1]["latex"]
    assert rendered == 1 and errors == 0
    assert refused["status"] == "notes.png: not an image (or a format this browser cannot read)"
    assert refused["tokens"] is None and refused["latex"] == ""
    times = [r["ms"] for r in results]
    print(f"page load {load_seconds:.2f} s (model {page_load_ms / 1000:.2f} s), first "
          f"prediction {times[0] / 1000:.2f} s, then median "
          f"{np.median(times[1:]) / 1000:.2f} s; {len(wanted)} of {len(wanted)} as the "
          "Python ONNX runtime predicts")
    if os.environ.get("IMG2LATEX_UPDATE_DOCS") == "1":
        shutil.copy(OUTPUT_DIR / "page.png", ROOT / "docs" / "web-page.png")
