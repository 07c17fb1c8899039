"""Tests for img2latex_lib.render with real pdflatex, Ghostscript and matplotlib."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2latex_lib.render import (
    MAX_FORMULA_LENGTH,
    LatexRenderer,
    MathtextRenderer,
    RenderError,
    check_formula,
    default_renderer,
    latex_available,
    mathtext_source,
)

REAL = Path(__file__).resolve().parent.parent / "data" / "im2latex100k_val"
needs_latex = pytest.mark.skipif(not latex_available(), reason="pdflatex or gs not installed")
FRACTION = r"\frac { a } { b } + x ^ { 2 }"
MATRIX = r"\left( \begin{matrix} { a } & { b } \\ { c } & { d } \\ \end{matrix} \right)"


def ink_size(image: Image.Image) -> tuple[int, int]:
    """Width and height of the non-white pixels."""
    gray = np.asarray(image.convert("L"))
    rows = np.flatnonzero((gray < 255).any(axis=1))
    cols = np.flatnonzero((gray < 255).any(axis=0))
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def assert_formula_image(image: Image.Image) -> None:
    gray = np.asarray(image)
    assert image.mode == "L"
    assert gray.min() < 40, "ink should be dark"
    assert gray[0].min() == 255 and gray[-1].min() == 255, "a white margin above and below"
    assert (gray == 255).mean() > 0.5, "mostly white background"


@pytest.fixture(scope="module")
def latex() -> LatexRenderer:
    if not latex_available():
        pytest.skip("pdflatex or gs not installed")
    return LatexRenderer(workers=1)


@needs_latex
def test_latex_renders_a_simple_formula(latex: LatexRenderer) -> None:
    image = latex.render(FRACTION)
    assert_formula_image(image)
    width, height = ink_size(image)
    assert 35 <= width <= 60 and 25 <= height <= 40  # 10pt at 100 dpi: a display fraction


def test_tokenized_dimensions_render(latex: LatexRenderer) -> None:
    """``\\hspace { 1 c m }`` (how the data sets spell it) is the LaTeX ``\\hspace{1cm}``."""
    spaced, plain = latex.render_batch([r"a \hspace { 1 c m } b", "a b"])
    assert spaced.error is None and plain.error is None
    gap = ink_size(spaced.image)[0] - ink_size(plain.image)[0]
    assert 35 <= gap <= 45  # 1 cm at 100 dpi is 39 px, less the space between a and b


@needs_latex
def test_one_bad_formula_fails_alone_in_a_batch() -> None:
    formulas = ["a + b", r"\frac { 1 } { 2", "x ^ { 2 }", r"\undefinedmacro x", "c"]
    strict = LatexRenderer(template="amsmath", workers=1).render_batch(formulas)
    assert [r.image is not None for r in strict] == [True, False, True, False, True]
    assert "unbalanced braces" in strict[1].error
    assert "Undefined control sequence" in strict[3].error and r"\undefinedmacro" in strict[3].error
    assert [r.formula for r in strict] == formulas

    tolerant = LatexRenderer(template="im2latex", workers=1).render_batch(formulas)
    assert tolerant[3].image is not None  # TeX skips the unknown command, like the real data
    assert any("Undefined control sequence" in w for w in tolerant[3].warnings)


@needs_latex
def test_results_keep_their_order_across_parallel_groups() -> None:
    formulas = [" + ".join(["x"] * n) for n in range(1, 8)]
    results = LatexRenderer(batch_size=2, workers=2).render_batch(formulas)
    assert [r.formula for r in results] == formulas
    widths = [ink_size(r.image)[0] for r in results]
    assert widths == sorted(widths) and len(set(widths)) == len(widths)
    assert all(r.warnings == () for r in results)


@needs_latex
def test_display_wider_than_the_line_is_an_error(latex: LatexRenderer) -> None:
    result = latex.render_batch([" + ".join("abcdefghijklmnopqrstuvwxyz" * 2)])[0]
    assert result.image is None and "wider than the line" in result.error


@needs_latex
def test_empty_render_is_an_error(latex: LatexRenderer) -> None:
    results = latex.render_batch([r"\, \quad", "", "y"])
    assert "renders nothing" in results[0].error
    assert "empty formula" in results[1].error
    assert results[2].image is not None
    with pytest.raises(RenderError, match="renders nothing"):
        latex.render(r"\,")


@pytest.mark.parametrize(
    "formula",
    [
        r"\input{/etc/passwd}",
        r"\immediate \write18 { touch X }",
        r"\def \a { \a } \a",
        r"\catcode `\^^M = 13",
        r"^^5cinput{/etc/passwd}",
        r"\csname input \endcsname",
        r"\begin{input} /etc/passwd \end{input}",
        r"\pdffiledump length 100 {/etc/passwd}",
        r"x \end{displaymath} y",
        r"\frac { a } { b",
        "x } {",
    ],
)
def test_unsafe_formulas_are_rejected_up_front(formula: str) -> None:
    with pytest.raises(RenderError):
        check_formula(formula)


@needs_latex
def test_renderer_reports_rejected_formulas(latex: LatexRenderer) -> None:
    results = latex.render_batch([r"\input{/etc/passwd}", "x"])
    assert r"\input is not allowed" in results[0].error and results[1].image is not None
    with pytest.raises(RenderError, match="is not allowed"):
        latex.render(r"\immediate \write18 { touch X }")


def test_check_formula_keeps_ordinary_formulas() -> None:
    assert check_formula(MATRIX) == MATRIX
    assert check_formula("a \\\\ [ 2 p t ] b\n+ c") == "a \\\\ [ 2 p t ] b + c"
    for formula in [
        r"\matrix { a & b \cr c & d }",
        r"\hbox { x } \mbox { y } \left( a \right) \operatorname { s i n } x",
        r"\begin{array} { c c } a & b \\ c & d \end{array} \newline \boldmath x",
        r"\setcounter { equation } { 2 } \label { e } \nonumber \hspace { 1 c m }",
    ]:
        assert check_formula(formula) == formula


def test_overlong_formula_is_refused_as_too_long() -> None:
    formula = "x + " * 25_000  # 100 KB: TeX itself said it "renders nothing"
    with pytest.raises(RenderError, match=rf"too long: 99999 characters, the limit is "
                       rf"{MAX_FORMULA_LENGTH}"):
        check_formula(formula)
    if latex_available():
        assert "too long" in LatexRenderer(workers=1).render_batch([formula])[0].error
    if (REAL / "formulas.norm.lst").exists():
        longest = max(map(len, (REAL / "formulas.norm.lst").read_text("utf-8").split("\n")))
        assert MAX_FORMULA_LENGTH >= 8 * longest


@needs_latex
def test_sandbox_contains_hostile_formulas_that_pass_the_screen(tmp_path: Path) -> None:
    renderer = LatexRenderer(screen=False, timeout=3, workers=1)
    formulas = [
        "a",
        rf"\immediate\write18{{touch {tmp_path}/shell}} x",
        r"\input{/etc/passwd}",
        rf"\immediate\openout1={tmp_path}/out \immediate\write1{{hi}} x",
        r"\def\a{\a}\a",
        "b",
    ]
    start = time.monotonic()
    results = renderer.render_batch(formulas)
    assert time.monotonic() - start < 60  # the endless loop was stopped
    assert results[0].image is not None and results[5].image is not None
    assert "passwd" in results[2].error
    assert "can't write" in results[3].error
    assert "timed out" in results[4].error
    assert list(tmp_path.iterdir()) == []


@needs_latex
def test_matrix_is_flattened_without_amsmath() -> None:
    flat = LatexRenderer(template="im2latex").render_batch([MATRIX])[0]
    tall = LatexRenderer(template="amsmath").render(MATRIX)
    assert any("Misplaced alignment tab" in w for w in flat.warnings)
    assert ink_size(flat.image)[1] < 0.75 * ink_size(tall)[1]  # one row instead of two


@needs_latex
def test_templates_share_the_glyph_size() -> None:
    plain = LatexRenderer(template="im2latex").render(FRACTION)
    ams = LatexRenderer(template="amsmath").render(FRACTION)
    assert abs(ink_size(plain)[0] - ink_size(ams)[0]) <= 1
    assert abs(ink_size(plain)[1] - ink_size(ams)[1]) <= 1


@needs_latex
def test_coverage_raster_is_darker_than_plain_antialiasing() -> None:
    formula = r"\int _ { 0 } ^ { \infty } e ^ { - x ^ { 2 } } d x = \frac { \sqrt { \pi } } { 2 }"
    dark = np.asarray(LatexRenderer(raster="coverage").render(formula))
    light = np.asarray(LatexRenderer(raster="antialias").render(formula))
    assert (dark < 128).mean() > 1.5 * (light < 128).mean()


@needs_latex
def test_rendered_sizes_match_real_im2latex_images() -> None:
    if not (REAL / "formulas.norm.lst").exists():
        pytest.skip("im2latex-100k validation data not available")
    formulas = (REAL / "formulas.norm.lst").read_text(encoding="utf-8").split("\n")
    ids = list(range(3, 7475, 740))  # ten formulas from the development (non-test) range
    results = LatexRenderer().render_batch([formulas[i] for i in ids])
    for i, result in zip(ids, results, strict=True):
        real_w, real_h = ink_size(Image.open(REAL / "images" / f"{i}.png"))
        width, height = ink_size(result.image)
        assert abs(width - real_w) <= 3 and abs(height - real_h) <= 3, (i, width, height)


def test_mathtext_source_drops_token_spaces() -> None:
    assert mathtext_source(r"a ^ { 2 } \alpha b \, c") == r"a^{2}\alpha b\,c"
    assert mathtext_source(r"\frac { 1 } { x ^ { \frac { a } { b } } }") == (
        r"\dfrac{1}{x^{\frac{a}{b}}}"
    )


def test_mathtext_renders_a_simple_formula() -> None:
    image = MathtextRenderer().render(FRACTION)
    assert_formula_image(image)
    width, height = ink_size(image)
    assert 30 <= width <= 60 and 25 <= height <= 40


@needs_latex
def test_mathtext_glyphs_are_latex_sized(latex: LatexRenderer) -> None:
    formula = r"x ^ { 2 } + y _ { i } = \alpha"
    assert (
        abs(ink_size(MathtextRenderer().render(formula))[1] - ink_size(latex.render(formula))[1])
        <= 3
    )


def test_mathtext_fails_cleanly_on_unsupported_input() -> None:
    renderer = MathtextRenderer()
    results = renderer.render_batch([r"\begin{array} { c } a \end{array}", "x + 1", r"\left\{ a"])
    assert [r.image is not None for r in results] == [False, True, False]
    assert all("mathtext" in r.error for r in (results[0], results[2]))
    with pytest.raises(RenderError, match="mathtext"):
        renderer.render(r"\begin{array} { c } a \end{array}")


def test_mathtext_worker_pool_keeps_order_and_is_reused() -> None:
    formulas = [f"x _ {{ {i} }} + \\frac {{ {i % 7} }} {{ y }}" for i in range(110)]
    formulas[5] = r"\begin{array} { c } a \end{array}"  # fails in a worker, reported in place
    renderer = MathtextRenderer(workers=2)
    first = renderer.render_batch(formulas)
    pool = renderer._pool
    assert pool is not None
    second = renderer.render_batch(formulas)
    assert renderer._pool is pool, "the worker processes are started once"
    renderer.close()
    assert renderer._pool is None
    serial = MathtextRenderer(workers=1).render_batch([formulas[k] for k in (0, 5, 109)])
    for results in (first, second):
        assert [r.formula for r in results] == formulas
        assert results[5].image is None and "mathtext" in results[5].error
        for k, alone in zip((0, 109), (serial[0], serial[2]), strict=True):
            assert np.array_equal(np.asarray(results[k].image), np.asarray(alone.image))


def test_mathtext_font_choice_is_deterministic() -> None:
    fonts = ("cm", "stix", "dejavuserif")
    formulas = [f"x _ {{ {i} }}" for i in range(12)]
    first = [MathtextRenderer(fonts=fonts, seed=7).font_for(f) for f in formulas]
    again = [MathtextRenderer(fonts=fonts, seed=7).font_for(f) for f in formulas]
    assert first == again and len(set(first)) > 1
    with pytest.raises(ValueError, match="unknown mathtext fonts"):
        MathtextRenderer(fonts=("comic",))


def test_default_renderer_matches_what_is_installed() -> None:
    expected = LatexRenderer if latex_available() else MathtextRenderer
    assert isinstance(default_renderer(), expected)
