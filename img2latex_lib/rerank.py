"""Render-checked decoding: among a beam's candidates, the one whose render reproduces the image.

Beam search ranks its candidates by the model's probability alone, and the right formula is often
among them but not first (on val ids 6975-7474 it is in the beam-5 list about a third more often
than it is first). When the input was typeset the way the im2latex-100k images were (LaTeX at
10pt, 100 dpi), every candidate can be rendered the same way and compared with the input
(:func:`selftrain.image_distance`, the self-training verifier's comparison, which forgives
rasterisation and nothing else). :class:`RenderReranker` keeps the model's best-scored candidate
among those that match the image about as well as the best match does: candidates that render
alike (``x ^ 2`` / ``x ^ { 2 }``) are told apart by the model, candidates that render differently
by the picture. An image no candidate matches in size (another scale or font) keeps the beam's
first candidate, so the check never makes a prediction worse on such inputs, only slower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .preprocess import ImageSource, load_image
from .selftrain import Verifier

#: How much worse than the best-matching candidate (in :func:`selftrain.image_distance` units,
#: pixels' worth of unexplained ink) a better-scored candidate may match and still be chosen.
#: Chosen on val ids 6975-7474 (never trained on); see ``benchmarks/accuracy.py --rerank``.
DEFAULT_TOLERANCE = 0.5


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
        """Each candidate's :func:`selftrain.image_distance` to its image (inf: no render, or
        not the image's size)."""
        verdicts = self.verifier.verify_batch([load_image(image) for image in images],
                                              candidate_lists)
        return [verdict.distances for verdict in verdicts]

    def choose(self, images: Sequence[ImageSource],
               candidate_lists: Sequence[Sequence[str]]) -> list[str]:
        """The chosen candidate of each image (an empty list of candidates gives "")."""
        return [candidates[chosen_index(distances, self.tolerance)] if candidates else ""
                for candidates, distances in zip(
                    candidate_lists, self.distances(images, candidate_lists), strict=True)]
