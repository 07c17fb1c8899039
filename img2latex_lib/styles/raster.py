"""After typesetting: what a person's rasterisation does to a formula image (gamma, margins, ink
and background colours, JPEG), and `RasterRenderer`, which applies it to any renderer's images.

The engines rasterise at the style's dpi and in its mode themselves (a PDF is best rasterised at
the final resolution, a browser at its device pixel ratio); everything here works on the grey
image they return, ink dark on white.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from ..render import Renderer, RenderResult
from .spec import Raster

__all__ = ["RasterRenderer", "apply_raster", "ink_coverage"]


def ink_coverage(image: Image.Image) -> np.ndarray:
    """Ink coverage in [0, 1] per pixel of a grey render (0: background, 1: full ink)."""
    return (255.0 - np.asarray(image.convert("L"), dtype=np.float32)) / 255.0


def apply_raster(image: Image.Image, raster: Raster) -> Image.Image | None:
    """A grey render (dark ink on white) as `raster` says: gamma on the ink coverage, cut to the
    ink plus ``raster.margin`` pixels, painted in its ink and background colours ("L" when both
    are grey, else "RGB"), then JPEG-compressed if asked. None when there is no ink at all."""
    cover = ink_coverage(image)
    rows = np.flatnonzero((cover > 0).any(axis=1))
    cols = np.flatnonzero((cover > 0).any(axis=0))
    if rows.size == 0:
        return None
    cover = cover[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if raster.gamma != 1.0:
        cover = cover ** (1.0 / raster.gamma)
    cover = np.pad(cover, raster.margin)[..., None]
    ink = np.asarray(raster.ink, np.float32)
    background = np.asarray(raster.background, np.float32)
    pixels = np.rint(background * (1.0 - cover) + ink * cover).clip(0, 255).astype(np.uint8)
    out = Image.fromarray(pixels, "RGB") if raster.colour else Image.fromarray(pixels[..., 0], "L")
    if raster.jpeg is not None:
        buffer = io.BytesIO()
        out.save(buffer, format="JPEG", quality=raster.jpeg)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out = decoded.convert(out.mode)
    return out


class RasterRenderer(Renderer):
    """Wraps a renderer and passes each of its images through `apply_raster`."""

    def __init__(self, base: Renderer, raster: Raster) -> None:
        self.base = base
        self.raster = raster

    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """The base renderer's results, images rasterised; an all-blank image is an error."""
        results = self.base.render_batch(formulas)
        out = []
        for result in results:
            if result.image is None:
                out.append(result)
                continue
            image = apply_raster(result.image, self.raster)
            error = None if image is not None else "formula renders nothing (empty image)"
            out.append(replace(result, image=image, error=error))
        return out

    def close(self) -> None:
        """Close the base renderer (browser, worker processes) if it has anything to close."""
        close = getattr(self.base, "close", None)
        if close is not None:
            close()
