"""Typesetting styles: named ways to turn a formula into the image a user would have, behind the
`Renderer` interface (TeX engines and math fonts, KaTeX and MathJax in a browser, matplotlib's
mathtext; print or screen resolution, antialiasing, gamma, JPEG, margins, ink and page colours).

    >>> from img2latex_lib.styles import available_styles, style_renderer
    >>> renderer = style_renderer("times+screen-96dpi")   # doctest: +SKIP
    >>> renderer.render_batch([r"\\frac { a } { b }"])[0].image   # doctest: +SKIP

`im2latex` is exactly `LatexRenderer()`, the default for re-creating im2latex-100k.
`StyleMix` draws a style per formula (seeded) for training data.
"""

from .mix import StyleMix
from .raster import RasterRenderer, apply_raster
from .registry import (
    RASTER_PRESETS,
    STYLES,
    StyleUnavailable,
    all_styles,
    available_styles,
    describe_styles,
    get_style,
    missing,
    style_renderer,
)
from .spec import Raster, Style

__all__ = [
    "RASTER_PRESETS",
    "STYLES",
    "Raster",
    "RasterRenderer",
    "Style",
    "StyleMix",
    "StyleUnavailable",
    "all_styles",
    "apply_raster",
    "available_styles",
    "describe_styles",
    "get_style",
    "missing",
    "style_renderer",
]
