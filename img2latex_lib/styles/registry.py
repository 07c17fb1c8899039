"""The named styles and raster presets, what each needs, and `style_renderer`.

A style name is a registered style, optionally followed by raster presets joined with ``+``:
``times``, ``katex+dark``, ``palatino+screen-144dpi+jpeg-70``. A raster preset on its own is
also a style: Computer Modern (``cm-10pt``) rasterised that way (``screen-144dpi``, ``dark``).
"""

from __future__ import annotations

import importlib.util

from ..render import Renderer, RenderError
from .spec import Raster, Style

__all__ = [
    "RASTER_PRESETS",
    "STYLES",
    "StyleUnavailable",
    "all_styles",
    "available_styles",
    "describe_styles",
    "get_style",
    "missing",
    "style_renderer",
    "styles_help",
]


class StyleUnavailable(RenderError):
    """A style whose tools (TeX engine, font, browser) are not installed on this machine."""


#: Raster presets: each changes some `Raster` fields of the style it is added to.
RASTER_PRESETS: dict[str, dict[str, object]] = {
    "print-200dpi": {"dpi": 200},
    "print-300dpi": {"dpi": 300},
    "print-600dpi": {"dpi": 600},
    "screen-72dpi": {"dpi": 72},
    "screen-96dpi": {"dpi": 96},
    "screen-120dpi": {"dpi": 120},
    "screen-144dpi": {"dpi": 144},
    "coverage": {"mode": "coverage"},
    "mono": {"mode": "mono"},
    "gamma-light": {"gamma": 0.7},
    "gamma-heavy": {"gamma": 1.8},
    "jpeg-90": {"jpeg": 90},
    "jpeg-70": {"jpeg": 70},
    "tight": {"margin": 0},
    "loose": {"margin": 32},
    "blue-ink": {"ink": (0, 51, 153)},
    "red-ink": {"ink": (192, 0, 0)},
    "sepia": {"ink": (74, 52, 36), "background": (244, 236, 216)},
    "yellow": {"background": (255, 249, 196)},
    "grey-page": {"ink": (33, 33, 33), "background": (236, 236, 236)},
    "dark": {"ink": (230, 230, 230), "background": (30, 30, 30)},
    "dark-blue": {"ink": (255, 255, 255), "background": (0, 43, 92)},
    "solarized-dark": {"ink": (147, 161, 161), "background": (0, 43, 54)},
    "orange-slide": {"ink": (255, 255, 255), "background": (230, 126, 34)},
    "mid-grey": {"ink": (0, 0, 0), "background": (110, 110, 110)},
}
_PRESET_TEXT = {
    "coverage": "every pixel a glyph touches is ink (the im2latex-100k stroke weight)",
    "mono": "no antialiasing",
    "gamma-light": "light, thin strokes (gamma 0.7)",
    "gamma-heavy": "heavy, dark strokes (gamma 1.8)",
    "jpeg-90": "saved as JPEG, quality 90",
    "jpeg-70": "saved as JPEG, quality 70",
    "tight": "cut tight to the ink (no margin)",
    "loose": "a 32-pixel margin",
    "blue-ink": "blue ink",
    "red-ink": "red ink",
    "sepia": "brown ink on cream paper",
    "yellow": "black on a yellow (highlighted) page",
    "grey-page": "dark grey on a light grey page",
    "dark": "light grey on near-black (dark mode)",
    "dark-blue": "white on dark blue (a slide)",
    "solarized-dark": "low-contrast grey-green on dark teal",
    "orange-slide": "white on orange (a slide)",
    "mid-grey": "black on a mid-grey page",
}


def _faces() -> list[Style]:
    paper = Raster(dpi=100)
    web = Raster(dpi=96)
    tex = [
        Style("im2latex", "pdflatex", "im2latex", 10, Raster(dpi=100, mode="coverage"),
              "exactly LatexRenderer(): the im2latex-100k look (article 10pt, no amsmath)"),
        Style("cm-10pt", "pdflatex", "cm", 10, paper, "Computer Modern, article 10pt, amsmath"),
        Style("cm-11pt", "pdflatex", "cm", 11, paper, "Computer Modern, article 11pt, amsmath"),
        Style("cm-12pt", "pdflatex", "cm", 12, paper, "Computer Modern, article 12pt, amsmath"),
        Style("lmodern", "pdflatex", "lmodern", 10, paper, "Latin Modern (lmodern, T1), 10pt"),
        Style("lmodern-12pt", "pdflatex", "lmodern", 12, paper, "Latin Modern (lmodern), 12pt"),
        Style("times", "pdflatex", "times", 10, paper, "Times (mathptmx), 10pt"),
        Style("times-tx", "pdflatex", "txfonts", 10, paper, "Times with txfonts math, 10pt"),
        Style("palatino", "pdflatex", "palatino", 10, paper, "Palatino (mathpazo), 10pt"),
        Style("palatino-px", "pdflatex", "pxfonts", 10, paper, "Palatino with pxfonts, 10pt"),
        Style("euler", "pdflatex", "euler", 10, paper, "AMS Euler math letters (euler), 10pt"),
        Style("sans", "pdflatex", "sans", 11, paper, "sans-serif math (sansmath), 11pt"),
    ]
    opentype = [
        ("lm-lua", "latinmodern-math.otf", "Latin Modern Math"),
        ("termes-lua", "texgyretermes-math.otf", "TeX Gyre Termes Math (Times)"),
        ("pagella-lua", "texgyrepagella-math.otf", "TeX Gyre Pagella Math (Palatino)"),
        ("bonum-lua", "texgyrebonum-math.otf", "TeX Gyre Bonum Math (Bookman)"),
        ("schola-lua", "texgyreschola-math.otf", "TeX Gyre Schola Math (Century Schoolbook)"),
        ("dejavu-lua", "texgyredejavu-math.otf", "TeX Gyre DejaVu Math"),
        ("asana-lua", "Asana-Math.otf", "Asana Math (Palatino-like)"),
        ("stix2-lua", "STIXTwoMath-Regular.otf", "STIX Two Math"),
        ("libertinus-lua", "LibertinusMath-Regular.otf", "Libertinus Math"),
    ]
    lua = [Style(name, "lualatex", file, 10, paper, f"{text}, LuaLaTeX + unicode-math, 10pt")
           for name, file, text in opentype]
    browser = [
        Style("katex", "katex", "katex", 12, web, "KaTeX in Chromium, 16px page, 96 dpi"),
        Style("katex-2x", "katex", "katex", 12, Raster(dpi=192), "KaTeX, a 2x (HiDPI) screen"),
        Style("mathjax", "mathjax", "mathjax", 12, web,
              "MathJax 2 CommonHTML in Chromium, 16px page, 96 dpi"),
        Style("mathjax-2x", "mathjax", "mathjax", 12, Raster(dpi=192),
              "MathJax 2, a 2x (HiDPI) screen"),
    ]
    mathtext = [
        Style(f"mathtext-{font}", "mathtext", font, 10, paper, f"matplotlib mathtext, {font}")
        for font in ("cm", "stix", "stixsans", "dejavuserif", "dejavusans")
    ]
    combos = [
        Style("pdf-viewer", "pdflatex", "cm", 12, Raster(dpi=96),
              "a PDF viewer at 100 %: article 12pt, Computer Modern, 96 dpi antialiased"),
        Style("slides", "pdflatex", "sans", 11, Raster(dpi=250),
              "a full-screen slide: sans-serif math 11pt seen at 250 dpi"),
        Style("slides-dark", "pdflatex", "sans", 11,
              Raster(dpi=250, ink=(255, 255, 255), background=(0, 43, 92)),
              "a slide with white formulas on dark blue"),
        Style("web-dark", "katex", "katex", 12,
              Raster(dpi=96, ink=(230, 230, 230), background=(30, 30, 30)),
              "KaTeX on a dark-mode web page"),
    ]
    return tex + lua + browser + mathtext + combos


def _presets() -> list[Style]:
    base = next(style for style in _faces() if style.name == "cm-10pt")
    styles = []
    for name, changes in RASTER_PRESETS.items():
        dpi = changes.get("dpi")
        what = (f"{dpi} dpi, as a {'print or scan' if name.startswith('print') else 'screen'}"
                if dpi else _PRESET_TEXT[name])
        styles.append(Style(name, base.engine, base.font, base.size,
                            base.raster.changed(**changes), f"Computer Modern 10pt, {what}"))
    return styles


#: Every registered style by name (faces, combinations, and each raster preset on CM 10pt).
STYLES: dict[str, Style] = {style.name: style for style in _faces() + _presets()}


def get_style(name: str) -> Style:
    """The `Style` called `name` (``face`` or ``face+preset+preset...``); ValueError if unknown."""
    first, *presets = [part.strip() for part in name.strip().lower().split("+")]
    if first not in STYLES:
        raise ValueError(f"unknown style {first!r}: use one of {', '.join(STYLES)}")
    style = STYLES[first]
    for preset in presets:
        if preset not in RASTER_PRESETS:
            raise ValueError(f"unknown raster preset {preset!r} in style {name!r}: "
                             f"use some of {', '.join(RASTER_PRESETS)}")
        style = style.with_raster(**RASTER_PRESETS[preset])
    return style.with_raster("+".join([first, *presets]))


def missing(name: str | Style) -> str | None:
    """Why the style cannot render on this machine (what to install), or None if it can."""
    style = name if isinstance(name, Style) else get_style(name)
    if style.engine in ("pdflatex", "lualatex"):
        from .tex import tex_missing

        return tex_missing(style)
    if style.engine in ("katex", "mathjax"):
        from .web import web_missing

        return web_missing(style.engine)
    if importlib.util.find_spec("matplotlib") is None:  # found, not imported: --help stays fast
        return "needs matplotlib (pip install matplotlib)"
    return None


def all_styles() -> list[str]:
    """Every registered style name, available here or not."""
    return list(STYLES)


def available_styles() -> list[str]:
    """The registered style names whose tools are installed on this machine."""
    return [name for name in STYLES if missing(name) is None]


def describe_styles() -> list[tuple[str, str, str | None]]:
    """``(name, description, why it is unavailable or None)`` for every registered style."""
    return [(name, style.description, missing(name)) for name, style in STYLES.items()]


def styles_help() -> str:
    """Text for a command's ``--help``: the styles available here, the raster presets, and the
    styles that are not (with what they need)."""
    rows = describe_styles()
    width = max(len(name) for name, _, _ in rows) + 2
    here = [f"  {name:{width}s}{text}" for name, text, reason in rows if reason is None]
    absent = [f"  {name:{width}s}{reason}" for name, _, reason in rows if reason is not None]
    lines = ["styles available here:", *here,
             "add raster presets with +, e.g. times+screen-96dpi+jpeg-70: "
             + ", ".join(RASTER_PRESETS)]
    if absent:
        lines += ["not available here:", *absent]
    return "\n".join(lines)


def style_renderer(name: str | Style, workers: int = 2) -> Renderer:
    """A `Renderer` for the style; raises `StyleUnavailable` saying what to install.

    Images are "L", or "RGB" for coloured ink or background; ``im2latex`` is `LatexRenderer()`.
    """
    style = name if isinstance(name, Style) else get_style(name)
    reason = missing(style)
    if reason is not None:
        raise StyleUnavailable(f"style {style.name!r} {reason}")
    raster = style.raster
    if style.engine in ("pdflatex", "lualatex"):
        from .tex import tex_renderer

        return tex_renderer(style, workers=workers)
    from .raster import RasterRenderer

    if style.engine in ("katex", "mathjax"):
        from .web import WebRenderer

        base: Renderer = WebRenderer(style.engine, size_px=style.size * 4 / 3, dpi=raster.dpi,
                                     mode=raster.mode)
    else:
        from ..render import MathtextRenderer

        # mathtext draws coverage only: antialias by drawing larger (up to 800 dpi) and shrinking
        factor = {"antialias": max(1, min(4, 800 // raster.dpi)), "coverage": 2,
                  "mono": 1}[raster.mode]
        base = MathtextRenderer(fonts=(style.font,), dpi=raster.dpi * factor, downsample=factor,
                                fontsize=style.size, workers=workers)
    return RasterRenderer(base, raster)
