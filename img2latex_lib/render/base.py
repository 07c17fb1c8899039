"""The common interface of every renderer: `Renderer`, `RenderResult`, `RenderError`, and the
finishing steps that make a raster look like the im2latex-100k images (`finish`, `shrink`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

#: Rasterising resolution that, downsampled by 2, gives the im2latex-100k images their size.
IM2LATEX_DPI = 200


class RenderError(Exception):
    """A formula could not be rendered (the message says which and why)."""


@dataclass
class RenderResult:
    """Outcome for one formula: an image, or the reason there is none.

    ``warnings`` lists LaTeX errors that TeX recovered from while still producing an image (in the
    tolerant im2latex template, e.g. an undefined ``\\operatorname`` typeset as italic letters).
    """

    formula: str
    image: Image.Image | None
    error: str | None
    warnings: tuple[str, ...] = field(default=())


def shorten(formula: str, limit: int = 60) -> str:
    """`formula` cut to `limit` characters (with "..."), to quote it in a message."""
    return formula if len(formula) <= limit else formula[: limit - 3] + "..."


def finish(gray: np.ndarray, downsample: int, coverage: bool) -> Image.Image | None:
    """Crop a grey raster (ink dark) to its ink, pad, and downsample like the im2latex images."""
    rows = np.flatnonzero((gray < 255).any(axis=1))
    cols = np.flatnonzero((gray < 255).any(axis=0))
    if rows.size == 0:
        return None
    ink = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if coverage:
        ink = np.where(ink < 255, 0, 255).astype(np.uint8)
    pad = 4 * downsample
    return shrink(np.pad(ink, pad, constant_values=255), downsample)


def shrink(gray: np.ndarray, factor: int, offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """Downsample a grey raster by ``factor`` (Lanczos), as the im2latex images were made.

    ``offset`` adds that many white rows and columns at the top and left first, which moves
    the ink by a fraction of an output pixel: ``offset=(1, 0)`` with ``factor=2`` gives the
    same picture half a pixel lower. The raster is padded with white to a multiple of factor.
    """
    top, left = offset
    height = -(-(gray.shape[0] + top) // factor) * factor
    width = -(-(gray.shape[1] + left) // factor) * factor
    canvas = np.full((height, width), 255, np.uint8)
    canvas[top : top + gray.shape[0], left : left + gray.shape[1]] = gray
    image = Image.fromarray(canvas)
    if factor > 1:
        image = image.resize((width // factor, height // factor), Image.Resampling.LANCZOS)
    return image


class Renderer(ABC):
    """Common interface: `render_batch` never raises for one bad formula, `render` raises."""

    @abstractmethod
    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """Render each formula; failures come back as results with `error` set."""

    def render(self, formula: str) -> Image.Image:
        """Render one formula to an "L" image (dark ink on white); raise RenderError on failure."""
        result = self.render_batch([formula])[0]
        if result.image is None:
            raise RenderError(result.error or f"formula {shorten(formula)!r} did not render")
        return result.image

