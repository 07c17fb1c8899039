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
matches either way keeps the beam's first candidate. A second model's beam (:func:`pooled` after
the first's) adds candidates the first did not think of: another model's mistakes differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .compare import rescaled_distance
from .preprocess import ImageSource, load_image
from .selftrain import Verifier

#: How much worse than the best-matching candidate (in :func:`compare.image_distance` units,
#: pixels' worth of unexplained ink) a better-scored candidate may match and still be chosen.
#: Chosen on val ids 6975-7474 (never trained on); see ``benchmarks/accuracy.py --rerank``.
DEFAULT_TOLERANCE = 0.5
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


class RenderReranker:
    """Choose a formula for each image from its candidates (best-scored first) by rendering them.

    ``verifier``: the :class:`selftrain.Verifier` whose renderer and comparison are used (default:
    pdflatex in the im2latex style); its threshold and margin play no part here.
    """

    def __init__(self, tolerance: float = DEFAULT_TOLERANCE, verifier: Verifier | None = None):
        self.tolerance = tolerance
        self.verifier = verifier or Verifier()

    def distances(self, images: Sequence[ImageSource],
                  candidate_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        """Each candidate's :func:`compare.image_distance` to its image, or where none
        matches the image's size, its :func:`rescaled_distance` (inf: no render, or no match)."""
        renders = iter(self.verifier.renderer.render_batch(
            [c for candidates in candidate_lists for c in candidates]))
        out = []
        for image, candidates in zip(images, candidate_lists, strict=True):
            gray = np.asarray(load_image(image))
            results = [next(renders) for _ in candidates]
            distances = self.verifier.judge(gray, results).distances
            if candidates and not any(map(math.isfinite, distances)):
                distances = [math.inf if r.image is None else
                             rescaled_distance(gray, np.asarray(r.image), self.verifier.factor)
                             for r in results]
            out.append(distances)
        return out

    def choose(self, images: Sequence[ImageSource],
               candidate_lists: Sequence[Sequence[str]]) -> list[str]:
        """The chosen candidate of each image (an empty list of candidates gives "")."""
        return [candidates[chosen_index(distances, self.tolerance)] if candidates else ""
                for candidates, distances in zip(
                    candidate_lists, self.distances(images, candidate_lists), strict=True)]
