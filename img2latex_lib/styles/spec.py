"""What a style is: a `Raster` (how the typeset formula becomes pixels) and a `Style` (engine,
font, size and raster). Plain data with no dependencies; the engines live in their own modules."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

__all__ = ["ENGINES", "RASTER_MODES", "RGB", "Raster", "Style"]

RGB = tuple[int, int, int]
#: How grey edges are kept: "antialias" (grey levels as rendered), "coverage" (every pixel a
#: glyph touches is ink, then downsampled: the im2latex-100k look), "mono" (no antialiasing).
RASTER_MODES = ("antialias", "coverage", "mono")
#: The typesetting engines a style can name.
ENGINES = ("pdflatex", "lualatex", "katex", "mathjax", "mathtext")


def _check_rgb(name: str, value: RGB) -> None:
    if len(value) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        raise ValueError(f"{name} must be three integers 0-255, got {value!r}")


@dataclass(frozen=True)
class Raster:
    """How a typeset formula becomes an image, as a person's screenshot or scan would.

    dpi: pixels per inch of the typeset size (96: a browser or PDF viewer at 100 %; 300: print).
    mode: one of `RASTER_MODES`.
    gamma: applied to ink coverage c in [0, 1] as ``c ** (1 / gamma)``: above 1 strokes get
        darker and bolder (like a heavy rasteriser), below 1 lighter (thin LCD-style text).
    jpeg: JPEG quality (1-95) the image is saved and read back with; None for lossless.
    margin: pixels of background kept around the ink on every side (0: cut tight to the ink).
    ink, background: RGB colours; anything but black on white gives an "RGB" image.
    """

    dpi: int = 100
    mode: str = "antialias"
    gamma: float = 1.0
    jpeg: int | None = None
    margin: int = 4
    ink: RGB = (0, 0, 0)
    background: RGB = (255, 255, 255)

    def __post_init__(self) -> None:
        if not 30 <= self.dpi <= 1200:
            raise ValueError(f"dpi must be 30-1200, got {self.dpi}")
        if self.mode not in RASTER_MODES:
            raise ValueError(f"raster mode {self.mode!r}: use one of {', '.join(RASTER_MODES)}")
        if not 0.2 <= self.gamma <= 5.0:
            raise ValueError(f"gamma must be 0.2-5, got {self.gamma}")
        if self.jpeg is not None and not 1 <= self.jpeg <= 95:
            raise ValueError(f"jpeg quality must be 1-95, got {self.jpeg}")
        if not 0 <= self.margin <= 200:
            raise ValueError(f"margin must be 0-200 pixels, got {self.margin}")
        _check_rgb("ink", self.ink)
        _check_rgb("background", self.background)

    @property
    def colour(self) -> bool:
        """True when the image comes back as "RGB" (ink or background not a grey)."""
        return len(set(self.ink)) > 1 or len(set(self.background)) > 1

    @property
    def plain(self) -> bool:
        """True when nothing but cropping and margins is done after rasterising."""
        return (self.gamma == 1.0 and self.jpeg is None and self.ink == (0, 0, 0)
                and self.background == (255, 255, 255))

    def changed(self, **changes: object) -> Raster:
        """A copy with some fields changed (unknown names raise ValueError)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown raster options {unknown}: use some of {sorted(known)}")
        return replace(self, **changes)


@dataclass(frozen=True)
class Style:
    """A named way to typeset and rasterise a formula.

    engine: one of `ENGINES`.
    font: what the engine calls the face: a `tex.PDFLATEX_FACES` key for pdflatex, an OpenType
        math font file for lualatex, a mathtext font set ("cm", "stix", ...), or the web
        engine's own name.
    size: the document's text size in points (the formula is typeset at that size; for the
        web engines the page's font size, 12pt = 16 CSS px).
    """

    name: str
    engine: str
    font: str
    size: float = 10.0
    raster: Raster = field(default_factory=Raster)
    description: str = ""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        if not 5 <= self.size <= 40:
            raise ValueError(f"size must be 5-40 pt, got {self.size}")

    def with_raster(self, name: str | None = None, **changes: object) -> Style:
        """A copy whose raster has some fields changed (and a new name, if given)."""
        return replace(self, name=name or self.name, raster=self.raster.changed(**changes))
