"""Render-checked decoding: among a beam's candidates, the one whose render reproduces the image.

Beam search ranks its candidates by the model's probability alone, and the right formula is often
among them but not first (on val ids 6975-7474 it is in the beam-5 list about a third more often
than it is first). When the input was typeset the way the im2latex-100k images were (LaTeX at
10pt, 100 dpi), every candidate can be rendered the same way and compared with the input
(:func:`compare.image_distance`, the self-training verifier's comparison, which forgives
rasterisation and nothing else). :class:`RenderReranker` keeps the model's best-scored candidate
among those that match the image about as well as the best match does: candidates that render
alike (``x ^ 2`` / ``x ^ { 2 }``) are told apart by the model, candidates that render differently
by the picture. An image at another zoom (a screenshot at 2x, a half-size crop) matches no render
in size; it is compared again with its ink scaled to each render's ink box, wherever the two boxes
have the same aspect ratio (:func:`rescaled_distance`). That comparison is blunter (the
rasterisations differ) but still tells a changed symbol from the right one. An image no candidate
matches either way, or matches only loosely (further than :data:`DEFAULT_MATCH_LIMIT`), keeps the
beam's first candidate: renders that do not reproduce the image cannot say which is right. A
second model's beam (:func:`pooled` after the first's) adds candidates the first did not think
of: another model's mistakes differ.

An image typeset another way (Times, a web page's KaTeX, a slide's sans-serif) matches no
im2latex-style render. With ``styles`` (e.g. :data:`PROBE_STYLES`), the candidates are rendered
in each of those styles, and for each image the style whose best render matches it best is kept:
its candidates are compared in that style, the nearest face standing in for the unknown one.
Where no probe style is the image's own face (a TeX Gyre face, a JPEG screenshot), its best match
stays loose and the match limit hands the choice back to the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .compare import image_distance, render_phases, rescaled_distance
from .preprocess import ImageSource, load_image
from .render import Renderer, RenderResult
from .selftrain import Verifier

#: How much worse than the best-matching candidate (in :func:`compare.image_distance` units,
#: pixels' worth of unexplained ink) a better-scored candidate may match and still be chosen.
#: Chosen on val ids 6975-7474 (never trained on); see ``benchmarks/accuracy.py --rerank``.
DEFAULT_TOLERANCE = 0.5
#: The loosest match (same units) that the check trusts: when even the best-matching candidate is
#: further from the image, no render reproduces it and the beam's first candidate is kept. The
#: right candidate in the image's own face matches within a pixel or so; a near face (Termes for
#: Times) or a JPEG's blur leaves every candidate several pixels off. Chosen on the calibration
#: slice (val ids 6975-7474) in the real images and 12 styles; see docs/decoding.md.
DEFAULT_MATCH_LIMIT = 2.0
#: The same for a comparison rescaled to another zoom, which is blunter (the right candidate of a
#: half-size or 1.5x image is 0.6-3.8 off).
RESCALED_MATCH_LIMIT = 4.0
#: One style of each family of faces people screenshot, tried in this order when the image's
#: style is unknown (``RenderReranker(styles=PROBE_STYLES)``, ``predict --rerank-styles``).
PROBE_STYLES = ("im2latex", "times", "palatino", "sans", "katex", "mathjax")


def pooled(*candidate_lists: Sequence[str]) -> list[str]:
    """The candidates of several n-best lists of one image, list by list, each once."""
    return list(dict.fromkeys(c for candidates in candidate_lists for c in candidates))


def chosen_index(distances: Sequence[float], tolerance: float = DEFAULT_TOLERANCE) -> int:
    """Index of the first candidate (best-scored first) whose distance is within ``tolerance``
    of the smallest; 0 when no candidate has a finite distance."""
    finite = [d for d in distances if math.isfinite(d)]
    if not finite:
        return 0
    best = min(finite)
    return next(k for k, d in enumerate(distances) if d <= best + tolerance)


def trusted_choices(candidate_lists: Sequence[Sequence[str]],
                    distances: Sequence[Sequence[float]], matched_styles: Sequence[str | None],
                    tolerance: float = DEFAULT_TOLERANCE) -> list[str]:
    """Each image's :func:`chosen_index` candidate where a style matched it within the limit
    (:attr:`RenderReranker.matched_styles`), else its first ("" for no candidates)."""
    return [(candidates[chosen_index(found, tolerance)] if style is not None else candidates[0])
            if candidates else ""
            for candidates, found, style in zip(candidate_lists, distances, matched_styles,
                                                strict=True)]


@dataclass(frozen=True)
class _CheckStyle:
    """A style candidates are rendered in, and how much finer than the image its renders are."""

    name: str
    renderer: Renderer
    factor: int


def _distance(gray: np.ndarray, render: RenderResult, factor: int) -> float:
    """:func:`compare.image_distance` of a render to the image at its best sub-pixel phase."""
    if render.image is None:
        return math.inf
    return min(image_distance(gray, phase)
               for phase in render_phases(np.asarray(render.image.convert("L")), factor))


def _rescaled(gray: np.ndarray, render: RenderResult, factor: int) -> float:
    if render.image is None:
        return math.inf
    return rescaled_distance(gray, np.asarray(render.image.convert("L")), factor)


def _distances(gray: np.ndarray, renders: Sequence[RenderResult],
               factor: int) -> tuple[list[float], bool]:
    """Each render's distance to the image, and whether they were rescaled: rescaled comparisons
    only where none matches as is, so that one image's candidates are always compared the same
    way."""
    distances = [_distance(gray, r, factor) for r in renders]
    if renders and not any(map(math.isfinite, distances)):
        return [_rescaled(gray, r, factor) for r in renders], True
    return distances, False


class RenderReranker:
    """Choose a formula for each image from its candidates (best-scored first) by rendering them.

    ``verifier``: the :class:`selftrain.Verifier` whose renderer and comparison are used for the
    im2latex style (default: pdflatex in the im2latex style); its threshold and margin play no
    part here. ``styles``: the styles tried for each image (names of :mod:`img2latex_lib.styles`;
    those whose tools are missing here are left out); the default is the im2latex style alone.
    ``match_limit`` and ``rescaled_match_limit``: the loosest best match trusted, as is and
    rescaled to another zoom; an image matched more loosely keeps the beam's first candidate.
    """

    def __init__(self, tolerance: float = DEFAULT_TOLERANCE, verifier: Verifier | None = None,
                 styles: Sequence[str] = ("im2latex",),
                 match_limit: float = DEFAULT_MATCH_LIMIT,
                 rescaled_match_limit: float = RESCALED_MATCH_LIMIT):
        if not styles:
            raise ValueError("the render check needs at least one style")
        self.tolerance = tolerance
        self.match_limit = match_limit
        self.rescaled_match_limit = rescaled_match_limit
        self.verifier = verifier or Verifier()
        self.styles = tuple(styles)
        self._check_styles: list[_CheckStyle] | None = None
        self.matched_styles: list[str | None] = []
        """The style each image of the last call was compared in (None: no candidate matched
        within the match limit, so the beam's first is kept)."""

    def check_styles(self) -> list[_CheckStyle]:
        """The styles tried, with their renderers (built once; unavailable styles left out)."""
        if self._check_styles is None:
            from .styles import missing, style_renderer

            found = []
            for name in self.styles:
                if name == "im2latex":
                    found.append(_CheckStyle(name, self.verifier.renderer, self.verifier.factor))
                elif missing(name) is None:
                    found.append(_CheckStyle(name, style_renderer(name), 1))
            if not found:
                raise ValueError(f"none of the render check's styles can render here: "
                                 f"{', '.join(self.styles)}")
            self._check_styles = found
        return self._check_styles

    def distances(self, images: Sequence[ImageSource],
                  candidate_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        """Each candidate's :func:`compare.image_distance` to its image, or where none matches
        the image's size, its :func:`rescaled_distance` (inf: no render, or no match), in the
        style whose best candidate matches the image best. Sets :attr:`matched_styles` (None
        where even that match is looser than the limit)."""
        grays = [np.asarray(load_image(image)) for image in images]
        flat = [c for candidates in candidate_lists for c in candidates]
        per_style = []
        for style in self.check_styles():
            renders = iter(style.renderer.render_batch(flat) if flat else [])
            per_style.append([_distances(gray, [next(renders) for _ in candidates], style.factor)
                              for gray, candidates in zip(grays, candidate_lists, strict=True)])
        out, self.matched_styles = [], []
        for k in range(len(grays)):
            closest = [min(found[k][0], default=math.inf) for found in per_style]
            best = min(range(len(per_style)), key=lambda i: (closest[i], i))
            distances, rescaled = per_style[best][k]
            limit = self.rescaled_match_limit if rescaled else self.match_limit
            out.append(distances)
            self.matched_styles.append(
                self.check_styles()[best].name if closest[best] <= limit else None)
        return out

    def choose(self, images: Sequence[ImageSource],
               candidate_lists: Sequence[Sequence[str]]) -> list[str]:
        """The chosen candidate of each image (an empty list of candidates gives "")."""
        return trusted_choices(candidate_lists, self.distances(images, candidate_lists),
                               self.matched_styles, self.tolerance)
