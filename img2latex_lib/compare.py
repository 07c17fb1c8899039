"""Comparing two images of formulas: do they show the same picture, and how far apart are they.

- :func:`bitmaps_match`: binarised ink crops that agree pixel for pixel (within a tolerance) —
  the im2markup-style image match of :mod:`metrics`, for two renders from one renderer.
- :func:`image_distance`: how much ink the worst 5x5 window of either image leaves unexplained by
  the other after the best sub-pixel alignment — the self-training verifier's comparison of a
  real image with a render (:mod:`selftrain`), which forgives rasterisation and nothing else.
- :func:`rescaled_distance`: the same for an image at another zoom (:mod:`rerank`).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .render import shrink

#: image_distance upsamples both images this many times and reports the worst window of this
#: many (original) pixels a side.
UPSAMPLE = 2
WINDOW = 5


def ink_mask(image: Image.Image | np.ndarray, threshold: int = 128) -> np.ndarray:
    """Binarise an image (ink = grey level <= ``threshold``) and crop it to the ink's bounding box.

    Accepts a PIL image (converted to grey), a 2-D grey array with values 0-255, or a boolean
    ink mask. An image without ink gives a (0, 0) mask.
    """
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("L"))
    else:
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"expected a grey image of shape (height, width), got shape {array.shape}")
    mask = array if array.dtype == bool else array <= threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=bool)
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def max_filter(a: np.ndarray, radius: int) -> np.ndarray:
    """Grow ink by ``radius`` pixels in every direction (square structuring element): the
    largest value within the square, for boolean masks and grey levels alike."""
    padded = np.pad(a, radius)
    height, width = a.shape
    rows = np.max([padded[:, dx : dx + width] for dx in range(2 * radius + 1)], axis=0)
    return np.max([rows[dy : dy + height] for dy in range(2 * radius + 1)], axis=0)


def bitmaps_match(
    a: Image.Image | np.ndarray,
    b: Image.Image | np.ndarray,
    tolerance: int = 0,
    max_mismatch: float = 0.0,
    threshold: int = 128,
) -> bool:
    r"""Whether two renders show the same picture, wherever it sits on the page.

    Both images are binarised and cropped to ink (:func:`ink_mask`). The crops must agree in size
    within ``2 * tolerance`` pixels; then, for some relative shift of at most ``tolerance`` pixels
    each way, every ink pixel of either image must lie within ``tolerance`` pixels of ink in the
    other, except for at most ``max_mismatch`` times their total ink.

    The default ``tolerance=0`` asks for identical crops: right for two renders from one renderer,
    which draws one picture the same way whatever its spelling. ``tolerance=1`` absorbs the pixel
    shifts between different rasterisers, but only at 200 dpi: at the 100 dpi of the im2latex-100k
    images it also accepted 46 of 148 formulas with one letter or digit changed (at 200 dpi it
    accepted only the 1 that exact comparison did).
    im2markup aligns binarised columns by edit distance and forgives mismatched runs shorter than
    5 columns, which is more lenient still; its "w/o spaces" variant (blank columns dropped) is
    left out here, as an inserted ``\,`` moves the glyphs after it by a fraction of a pixel and
    so still changes the bitmap (31 of 191 such pairs matched with blank columns dropped).
    """
    mask_a, mask_b = ink_mask(a, threshold), ink_mask(b, threshold)
    if mask_a.size == 0 or mask_b.size == 0:
        return mask_a.size == mask_b.size
    if mask_a.shape == mask_b.shape and np.array_equal(mask_a, mask_b):
        return True
    (ha, wa), (hb, wb) = mask_a.shape, mask_b.shape
    if abs(ha - hb) > 2 * tolerance or abs(wa - wb) > 2 * tolerance:
        return False
    allowed = max_mismatch * (np.count_nonzero(mask_a) + np.count_nonzero(mask_b))
    t = tolerance
    canvas = (max(ha, hb) + 4 * t, max(wa, wb) + 4 * t)
    placed_a = np.zeros(canvas, dtype=bool)
    placed_a[2 * t : 2 * t + ha, 2 * t : 2 * t + wa] = mask_a
    grown_a = max_filter(placed_a, t)
    padded_b = np.pad(mask_b, t)
    grown_b = max_filter(padded_b, t)
    for dy in range(2 * t + 1):
        for dx in range(2 * t + 1):
            window = (slice(dy, dy + hb + 2 * t), slice(dx, dx + wb + 2 * t))
            placed_b, shifted_grown_b = np.zeros(canvas, dtype=bool), np.zeros(canvas, dtype=bool)
            placed_b[window], shifted_grown_b[window] = padded_b, grown_b
            unexplained = np.count_nonzero(placed_a & ~shifted_grown_b) + np.count_nonzero(
                placed_b & ~grown_a
            )
            if unexplained <= allowed:
                return True
    return False


def _ink(gray: np.ndarray) -> np.ndarray | None:
    """Ink density (0 white, 1 black) cropped to the pixels darker than mid-grey, 2 px margin."""
    ink = 1.0 - np.asarray(gray, dtype=np.float32) / 255.0
    dark = ink > 0.5
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    if rows.size == 0:
        return None
    return ink[max(rows[0] - 2, 0) : rows[-1] + 3, max(cols[0] - 2, 0) : cols[-1] + 3]


def _upsample(ink: np.ndarray, factor: int) -> np.ndarray:
    height, width = ink.shape
    image = Image.fromarray(ink, mode="F").resize((width * factor, height * factor),
                                                  Image.Resampling.BILINEAR)
    return np.asarray(image)


def _worst_window(a: np.ndarray, size: int) -> float:
    """The largest sum of ``a`` over a ``size`` x ``size`` window."""
    cum = np.pad(a, ((1, 0), (1, 0))).cumsum(axis=0).cumsum(axis=1)
    if cum.shape[0] <= size or cum.shape[1] <= size:
        return float(a.sum())
    sums = cum[size:, size:] - cum[:-size, size:] - cum[size:, :-size] + cum[:-size, :-size]
    return float(sums.max())


def image_distance(image: np.ndarray | Image.Image, render: np.ndarray | Image.Image,
                   size_tolerance: int = 1) -> float:
    """How far a render is from an image: the ink (in pixels' worth) that the worst 5x5 window
    of either leaves unexplained by the other, after the best alignment; 0 is a perfect match.

    Both are grey images, ink dark. Infinite when either is blank or their ink crops differ in
    size by more than ``size_tolerance`` pixels in either direction.
    """
    a, b = _ink(image), _ink(render)
    if a is None or b is None:
        return float("inf")
    if max(abs(a.shape[0] - b.shape[0]), abs(a.shape[1] - b.shape[1])) > size_tolerance:
        return float("inf")
    f = UPSAMPLE
    a, b = _upsample(a, f), _upsample(b, f)
    reach = f  # shifts of up to one original pixel, in half-pixel steps
    height, width = max(a.shape[0], b.shape[0]) + 2 * reach, max(a.shape[1], b.shape[1]) + 2 * reach
    placed_a = np.zeros((height, width), np.float32)
    placed_a[reach : reach + a.shape[0], reach : reach + a.shape[1]] = a
    near_a = max_filter(placed_a, 1)
    near_b = max_filter(np.pad(b, 1), 1)
    best = float("inf")
    for dy in range(2 * reach + 1):
        for dx in range(2 * reach + 1):
            placed_b = np.zeros((height, width), np.float32)
            placed_b[dy : dy + b.shape[0], dx : dx + b.shape[1]] = b
            shifted_near_b = np.zeros((height + 2, width + 2), np.float32)
            shifted_near_b[dy : dy + b.shape[0] + 2, dx : dx + b.shape[1] + 2] = near_b
            unexplained = (np.maximum(placed_a - shifted_near_b[1:-1, 1:-1], 0)
                           + np.maximum(placed_b - near_a, 0))
            best = min(best, _worst_window(unexplained, WINDOW * f) / (f * f))
    return best


def render_phases(fine: np.ndarray | Image.Image, factor: int = 2) -> list[np.ndarray]:
    """A render made without downsampling, shrunk by ``factor`` at each sub-pixel phase."""
    gray = np.asarray(fine.convert("L") if isinstance(fine, Image.Image) else fine, np.uint8)
    return [np.asarray(shrink(gray, factor, (top, left)))
            for top in range(factor) for left in range(factor)]


#: Ink boxes whose width/height ratios differ by more than this share hold different formulas.
ASPECT_TOLERANCE = 0.05
#: Ink boxes within this share of each other's size are the same zoom: no rescaling.
SAME_ZOOM = 0.05


def _ink_box(gray: np.ndarray) -> np.ndarray | None:
    """``gray`` cropped to its pixels darker than mid-grey (None when there are none)."""
    dark = gray < 128
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    if rows.size == 0:
        return None
    return gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def rescaled_distance(image: np.ndarray, fine_render: np.ndarray, factor: int = 2) -> float:
    """:func:`compare.image_distance` between a render (made ``factor`` times finer than the
    im2latex size, as the verifier's renderer makes them) and a grey ``image`` of the same formula
    at another zoom: the image's ink box is resized (Lanczos) to the render's, then compared at
    every phase. Infinite when either is blank, when the boxes differ in aspect ratio by more
    than :data:`ASPECT_TOLERANCE`, or when they are the same size already (nothing to rescale:
    a size mismatch there means different content)."""
    phases = render_phases(fine_render, factor)
    ink, target = _ink_box(image), _ink_box(phases[0])
    if ink is None or target is None:
        return math.inf
    (height, width), (target_height, target_width) = ink.shape, target.shape
    if abs((width / height) / (target_width / target_height) - 1) > ASPECT_TOLERANCE:
        return math.inf
    if abs(height / target_height - 1) <= SAME_ZOOM and abs(width / target_width - 1) <= SAME_ZOOM:
        return math.inf
    resized = Image.fromarray(ink).resize((target_width, target_height), Image.Resampling.LANCZOS)
    placed = np.pad(np.asarray(resized), 4, constant_values=255)
    return min(image_distance(placed, phase) for phase in phases)
