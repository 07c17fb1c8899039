"""Tests for img2latex_lib.styles: every named style renders real formulas (or is skipped with
what it needs), the raster step, the registry's names, the seeded mix, and what the project's
preprocessing makes of each rasterisation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from img2latex_lib.preprocess import load_image, prepare_image
from img2latex_lib.render import LatexRenderer, RenderError, latex_available
from img2latex_lib.styles import (
    RASTER_PRESETS,
    STYLES,
    Raster,
    Style,
    StyleMix,
    StyleUnavailable,
    all_styles,
    apply_raster,
    available_styles,
    get_style,
    missing,
    style_renderer,
)
from img2latex_lib.styles.registry import styles_help

FRACTION = r"\frac { a } { b } + x ^ { 2 }"
MATRIX = r"\left( \begin{matrix} { a } & { b } \\ { c } & { d } \\ \end{matrix} \right)"
ROOT = r"\sqrt { \alpha }"
BAD = r"x ^ { 2 } ^ { 3 }"  # a double superscript: each engine's own error, not the screen's
# Rasterisations the project's preprocessing does not turn into dark ink on white yet.
PREPROCESS_FAILS: dict[str, str] = {}  # presets preprocessing does not handle (none now)


def _ink_box(image: Image.Image, background: tuple[int, int, int]) -> tuple[int, int]:
    """Width and height of the pixels far from the page colour."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    ink = np.abs(pixels - np.asarray(background, np.int16)).max(axis=2) > 64
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _needs(name: str) -> Style:
    reason = missing(name)
    if reason is not None:
        pytest.skip(f"style {name} {reason}")
    return get_style(name)


def _marks(name: str) -> list:
    engine = STYLES[name].engine
    marks = [pytest.mark.browser] if engine in ("katex", "mathjax") else []
    return marks + ([pytest.mark.slow] if engine == "lualatex" else [])


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in all_styles()])
def test_style_renders_formulas(name: str) -> None:
    style = _needs(name)
    results = style_renderer(name, workers=1).render_batch([FRACTION, MATRIX, ROOT, BAD])
    assert [r.formula for r in results] == [FRACTION, MATRIX, ROOT, BAD]
    fraction, matrix, root, bad = results
    if style.engine == "mathtext":  # mathtext has no matrix environment: an error, not a crash
        assert matrix.image is None and matrix.error
    else:
        assert matrix.error is None, matrix.error
    if style.font == "im2latex":  # the tolerant im2latex template recovers, with a warning
        assert bad.error is not None or bad.warnings
    else:
        assert bad.image is None and bad.error, "a double superscript must fail"
    raster = style.raster
    scale = raster.dpi * style.size / 10  # pixels per inch of type set at 10pt
    for result in (fraction, root) + ((matrix,) if matrix.image else ()):
        assert result.error is None, result.error
        image = result.image
        assert image.mode == ("RGB" if raster.colour else "L")
        if raster.margin and not raster.jpeg:
            corner = np.asarray(image.convert("RGB"))[0, 0]
            assert tuple(int(v) for v in corner) == raster.background
        width, height = _ink_box(image, raster.background)
        assert 0.1 <= height / scale <= 0.6 and 0.1 <= width / scale <= 1.5, (image.size, scale)
    assert _ink_box(fraction.image, raster.background)[1] > _ink_box(root.image,
                                                                     raster.background)[1]


def test_im2latex_style_is_exactly_the_default_latex_renderer() -> None:
    if not latex_available():
        pytest.skip("pdflatex or gs not installed")
    renderer = style_renderer("im2latex")
    plain = (bool, int, float, str, tuple, type(None))
    settings = [{k: v for k, v in vars(r).items() if isinstance(v, plain)}
                for r in (renderer, LatexRenderer())]
    assert type(renderer) is LatexRenderer and settings[0] == settings[1]
    ours, theirs = renderer.render(FRACTION), LatexRenderer(workers=1).render(FRACTION)
    assert ours.tobytes() == theirs.tobytes() and ours.size == theirs.size


def test_names_are_short_lower_case_and_compose() -> None:
    for name in all_styles():
        assert name == name.lower() and " " not in name and len(name) <= 22
        assert get_style(name).name == name
    style = get_style("times+dark+jpeg-70")
    assert (style.name, style.font, style.raster.jpeg) == ("times+dark+jpeg-70", "times", 70)
    assert style.raster.background == (30, 30, 30) and style.raster.dpi == 100
    assert get_style("screen-144dpi").raster.dpi == 144  # a preset alone is CM at that raster
    assert get_style("pdf-viewer").size == 12 and get_style("pdf-viewer").raster.dpi == 96
    with pytest.raises(ValueError, match="unknown style"):
        get_style("comic-sans")
    with pytest.raises(ValueError, match="unknown raster preset"):
        get_style("times+blurry")
    assert set(available_styles()) <= set(all_styles())
    assert "add raster presets" in styles_help()


def test_a_style_without_its_tools_raises_with_what_to_install() -> None:
    style = Style("nofont-lua", "lualatex", "NoSuchFont-Math.otf")
    assert "NoSuchFont-Math.otf" in missing(style)
    with pytest.raises(StyleUnavailable, match="NoSuchFont-Math.otf"):
        style_renderer(style)
    assert issubclass(StyleUnavailable, RenderError)


def test_apply_raster_margins_colours_gamma_and_jpeg() -> None:
    gray = np.full((40, 60), 255, np.uint8)
    gray[10:20, 15:45] = 0
    gray[20, 15:45] = 128  # an antialiased edge
    image = Image.fromarray(gray)
    plain = apply_raster(image, Raster(margin=3))
    assert plain.mode == "L" and plain.size == (30 + 6, 11 + 6)
    assert apply_raster(image, Raster(margin=0)).size == (30, 11)
    dark = np.asarray(apply_raster(image, Raster(margin=3, ink=(230,) * 3, background=(30,) * 3)))
    assert dark[0, 0] == 30 and dark[5, 5] == 230 and dark.ndim == 2
    blue = apply_raster(image, Raster(ink=(0, 0, 200)))
    assert blue.mode == "RGB" and tuple(np.asarray(blue)[6, 6]) == (0, 0, 200)
    edge = {g: int(np.asarray(apply_raster(image, Raster(gamma=g)))[4 + 10, 10]) for g in
            (0.7, 1.0, 1.8)}
    assert edge[0.7] > edge[1.0] > edge[1.8]  # heavier gamma, darker antialiased edge
    jpeg = apply_raster(image, Raster(jpeg=70, ink=(200, 0, 0)))
    assert jpeg.mode == "RGB" and jpeg.size == blue.size
    assert apply_raster(Image.new("L", (5, 5), 255), Raster()) is None
    with pytest.raises(ValueError, match="dpi"):
        Raster(dpi=10)
    with pytest.raises(ValueError, match="unknown raster options"):
        Raster().changed(blur=2)


def test_style_mix_draws_the_same_style_for_a_formula_whatever_the_batch() -> None:
    names = ["cm-10pt", "times", "palatino", "mathtext-cm"]
    mix = StyleMix(names, seed=3, rasters=[None, "dark", "screen-96dpi"], skip_missing=True)
    formulas = [f"x _ {{ {i} }} + y" for i in range(40)]
    drawn = [mix.style_for(f) for f in formulas]
    assert drawn == [StyleMix(names, seed=3, rasters=[None, "dark", "screen-96dpi"],
                              skip_missing=True).style_for(f) for f in formulas]
    assert len(set(drawn)) > 3 and all(get_style(d) for d in drawn)
    assert drawn != [StyleMix(names, seed=4, rasters=[None, "dark", "screen-96dpi"],
                              skip_missing=True).style_for(f) for f in formulas]
    only = StyleMix(names, seed=0, weights=[0, 0, 0, 1])
    assert {only.style_for(f) for f in formulas} == {"mathtext-cm"}
    with pytest.raises(ValueError, match="unknown style"):
        StyleMix(["cm-10pt", "nope"])
    with pytest.raises(ValueError, match="weights"):
        StyleMix(names, weights=[1.0])


def test_style_mix_renders_in_order_with_each_formulas_style() -> None:
    names = [n for n in ("cm-10pt", "mathtext-stix", "dark") if missing(n) is None]
    if len(names) < 2:
        pytest.skip("needs at least two installed styles")
    mix = StyleMix(names, seed=1, workers=1)
    formulas = [FRACTION, ROOT, "a + b", BAD, "x ^ { 2 }", "y _ { 1 }"]
    results = mix.render_batch(formulas)
    assert [r.formula for r in results] == formulas
    assert results[3].error and all(r.image is not None for k, r in enumerate(results) if k != 3)
    for formula, result in zip(formulas, results, strict=True):
        if result.image is not None:
            alone = style_renderer(mix.style_for(formula), workers=1).render(formula)
            assert alone.size == result.image.size
    mix.close()


@pytest.mark.parametrize("formula", [r"\directlua{os.remove('x')}", r"\makeatletter x",
                                     r"\ExplSyntaxOn x", r"\setmathfont{x} y"])
def test_lualatex_styles_refuse_lua_and_font_commands(formula: str) -> None:
    _needs("termes-lua")
    result = style_renderer("termes-lua", workers=1).render_batch([formula])[0]
    assert result.image is None and "not allowed" in result.error


@pytest.mark.browser
@pytest.mark.parametrize("name", ["katex", "mathjax"])
def test_web_styles_refuse_links_and_screen_like_tex(name: str) -> None:
    _needs(name)
    results = style_renderer(name).render_batch(
        [r"\href{javascript:alert(1)}{x}", r"\require{html} x", r"\input{/etc/passwd}", "x"])
    assert all("not allowed" in r.error for r in results[:3])
    assert results[3].image is not None


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.xfail(reason=f"preprocess: {PREPROCESS_FAILS[name]}")]
                 if name in PREPROCESS_FAILS else [])
    for name in [*RASTER_PRESETS, "slides-dark", "web-dark", "im2latex"]])
def test_preprocessing_turns_each_rasterisation_into_dark_ink_on_white(name: str) -> None:
    _needs(name)
    _needs("cm-10pt")
    image = style_renderer(name, workers=1).render(FRACTION)
    gray = np.asarray(load_image(image))
    assert int(np.median(gray)) == 255 and gray.min() <= 40, "dark ink on a white page"
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    raster = get_style(name).raster
    background = np.asarray(raster.background, np.int16)
    contrast = np.abs(np.asarray(raster.ink, np.int16) - background).max()
    ink = (np.abs(pixels - background).max(axis=2) > contrast / 2).sum()  # over half covered
    assert (gray < 128).sum() >= 0.7 * ink, "the ink survives the conversion to grey"
    model_input = prepare_image(image)
    assert (model_input < 0.5).mean() > 0.02
    reference = prepare_image(style_renderer("cm-10pt", workers=1).render(FRACTION))
    if model_input.shape == reference.shape and get_style(name).engine == "pdflatex":
        assert float(np.abs(model_input - reference).mean()) < 0.1
