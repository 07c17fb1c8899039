"""A random style per formula for building training data: drawn from the seed and the formula
alone, so the same formula gets the same style in any batch, order or machine."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

from ..render import Renderer, RenderResult
from .registry import get_style, missing, style_renderer

__all__ = ["StyleMix"]


class StyleMix(Renderer):
    """Render each formula in a style drawn for it from `styles` (with `weights`, if given).

    rasters: optional raster presets drawn independently and added to the style (``None`` in
        the list keeps the style's own raster), e.g. ``[None, "screen-96dpi", "dark", "jpeg-70"]``.
    skip_missing: leave out styles whose tools are not installed (else `style_renderer` raises
        `StyleUnavailable` for them at the start).
    Formulas are grouped by style, so each style renders its share in one batch.
    """

    def __init__(self, styles: Sequence[str], seed: int = 0,
                 weights: Sequence[float] | None = None,
                 rasters: Sequence[str | None] | None = None, skip_missing: bool = False,
                 workers: int = 2) -> None:
        if weights is not None and len(weights) != len(styles):
            raise ValueError(f"{len(weights)} weights for {len(styles)} styles")
        pairs = list(zip(styles, weights or [1.0] * len(styles), strict=True))
        for name, _ in pairs:
            get_style(name)  # unknown names fail now, with the list of known ones
        if skip_missing:
            pairs = [(name, weight) for name, weight in pairs if missing(name) is None]
        if not pairs:
            raise ValueError("no style to draw from (none given, or none installed here)")
        self.styles = [name for name, _ in pairs]
        self.weights = [weight for _, weight in pairs]
        self.rasters = list(rasters) if rasters else [None]
        for preset in self.rasters:
            if preset is not None:
                get_style(f"{self.styles[0]}+{preset}")
        self.seed = seed
        self.workers = workers
        self._renderers: dict[str, Renderer] = {}

    def style_for(self, formula: str) -> str:
        """The full style name drawn for `formula` (stable across runs and machines)."""
        draw = random.Random(zlib.crc32(f"{self.seed}:{formula}".encode()))
        style = draw.choices(self.styles, weights=self.weights)[0]
        raster = draw.choice(self.rasters)
        return style if raster is None else f"{style}+{raster}"

    def renderer(self, name: str) -> Renderer:
        """The (cached) renderer of one full style name."""
        if name not in self._renderers:
            self._renderers[name] = style_renderer(name, workers=self.workers)
        return self._renderers[name]

    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """Render each formula in its drawn style; a failure is that formula's error."""
        groups: dict[str, list[int]] = {}
        for i, formula in enumerate(formulas):
            groups.setdefault(self.style_for(formula), []).append(i)
        results: list[RenderResult | None] = [None] * len(formulas)
        for name, indices in groups.items():
            rendered = self.renderer(name).render_batch([formulas[i] for i in indices])
            for i, result in zip(indices, rendered, strict=True):
                results[i] = result
        return [result for result in results if result is not None]

    def close(self) -> None:
        """Close the renderers that hold processes (mathtext workers)."""
        for renderer in self._renderers.values():
            close = getattr(renderer, "close", None)
            if close is not None:
                close()
