"""Image -> model input: load and validate, dark ink on white, crop to ink, rescale, pad, augment.

The pipeline of :func:`prepare_image`::

    load_image -> (Augmenter) -> crop_to_ink -> (Augmenter.pad) -> resize_to_height -> pad_width

The result is a float32 array ``[height, W, 1]`` in [0, 1] with dark ink (0.0) on a white
background (1.0). The ink is left-aligned: white padding is always added on the right, both when
the width is rounded up to a multiple of ``width_step`` and when a batch is padded to its widest
image (:func:`pad_width`), so an image looks the same to the model in any batch.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from .config import INPUT_HEIGHT

#: Largest image accepted, in pixels; a bigger one is refused before it is decoded.
MAX_PIXELS = 40_000_000
#: Longest side accepted, in pixels.
MAX_SIDE = 30_000
#: A pixel darker than this (0-255) counts as ink when cropping.
INK_THRESHOLD = 200
#: Ink must be at least this many grey levels darker than the background, else the image is blank.
MIN_CONTRAST = 32
#: White border (px) added before augmenting, so blur and rotation never clip the ink.
_AUG_BORDER = 8

ImageSource = str | Path | bytes | Image.Image | np.ndarray


#: What Pillow's format plugins raise on damaged data (besides its own UnidentifiedImageError).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


class ImageError(ValueError):
    """An input that cannot be used as a formula image; the message names the file."""


def _source_name(source: ImageSource, name: str | None) -> str:
    """The name used in error messages: the given name, the path, or a placeholder."""
    if name is not None:
        return name
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, bytes):
        return "<bytes>"
    return "<array>" if isinstance(source, np.ndarray) else "<image>"


def _check_size(width: int, height: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: zero-size image ({width}x{height} pixels)")
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ImageError(
            f"{name}: image is {width}x{height} pixels, more than the limit of "
            f"{MAX_PIXELS // 1_000_000} megapixels or {MAX_SIDE} pixels a side; downscale it first"
        )


def _open(source: str | Path | bytes, name: str) -> Image.Image:
    """Open a file or encoded bytes, check its size from the header, then decode it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # a damaged header's notes (EXIF...)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except (IsADirectoryError, PermissionError) as error:
        raise ImageError(f"{name}: cannot read the file ({error.strerror})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise ImageError(
            f"{name}: image is too large to decode safely (limit {MAX_PIXELS // 1_000_000} "
            "megapixels); downscale it first"
        ) from None
    except _DECODER_ERRORS as error:  # a format plugin choked on a damaged header
        raise ImageError(f"{name}: damaged or unreadable image file ({error})") from None
    with img, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return ImageOps.exif_transpose(_decoded(img, name))
        except ImageError:
            raise
        except _DECODER_ERRORS as error:
            raise ImageError(f"{name}: damaged or unreadable image file ({error})") from None


def _decoded(img: Image.Image, name: str) -> Image.Image:
    """Check the size from the header, then decode the pixels (a no-op for a decoded image)."""
    _check_size(*img.size, name)
    try:
        img.load()
    except _DECODER_ERRORS as error:
        raise ImageError(f"{name}: truncated or corrupt image file ({error})") from None
    return img


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale an integer (8/16-bit), bool or float ([0, 1] or [0, 255]) array to uint8."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    values = arr.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: image array has NaN or infinite values")
    top = float(values.max())
    if arr.dtype.kind == "f":
        full_scale = 1.0 if top <= 1.0 else 255.0
    else:
        full_scale = 65535.0 if arr.dtype == np.uint16 or top > 255 else 255.0
    return np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _array_to_image(arr: np.ndarray, name: str) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(
            f"{name}: array of shape {arr.shape} is not an image (expected HxW, HxWx1, HxWx3 "
            "or HxWx4)"
        )
    _check_size(arr.shape[1], arr.shape[0], name)
    return Image.fromarray(_to_uint8(arr, name))


def _composite_alpha(img: Image.Image) -> Image.Image:
    """Grayscale of an image with transparency, composited on a background that suits it.

    Mostly opaque: the transparent parts (rounded corners, ...) take the colour of the opaque
    page. Mostly transparent: the opaque part is the ink, composited on white if it is dark and on
    black if it is light (ink drawn for a dark page; :func:`load_image` then inverts it).
    """
    rgba = img.convert("RGBA")
    gray = rgba.convert("L")
    alpha = rgba.getchannel("A")
    gray_values = np.asarray(gray, dtype=np.float64)
    weights = np.asarray(alpha, dtype=np.float64)
    opaque = weights >= 128
    if opaque.mean() > 0.5:
        background = int(np.median(gray_values[opaque]))
    else:
        ink = np.average(gray_values, weights=weights) if weights.any() else 0.0
        background = 0 if ink > 127 else 255
    return Image.composite(gray, Image.new("L", img.size, background), alpha)


def _to_gray(img: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode -> 8-bit grayscale "L" (transparency composited, 16-bit scaled down)."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return _composite_alpha(img)
    if img.mode.startswith(("I", "F")):
        return Image.fromarray(_to_uint8(np.asarray(img), name))
    if img.mode not in ("L", "1", "P", "RGB"):
        img = img.convert("RGB")
    return img.convert("L")


def _light_ink(hist: np.ndarray) -> bool:
    """Whether the ink is lighter than the page: the page is the median grey level, the ink
    whatever is at least `MIN_CONTRAST` levels away from it (white on orange, light on dark).
    A page without ink counts as light ink when it is dark, so that it turns white (blank)."""
    page = int(np.searchsorted(np.cumsum(hist), hist.sum() / 2))
    levels = np.arange(256)
    ink = hist * (np.abs(levels - page) >= MIN_CONTRAST)
    if not ink.sum():
        return page < 128
    return float(ink @ levels) / ink.sum() > page


def _dark_on_white(img: Image.Image) -> Image.Image:
    """Invert an image whose ink is lighter than its page; stretch levels so ink is black and
    the page white."""
    hist = np.bincount(np.asarray(img).ravel(), minlength=256)
    cumulative = np.cumsum(hist)
    if _light_ink(hist):
        img = ImageOps.invert(img)
        hist, cumulative = hist[::-1], np.cumsum(hist[::-1])
    background = int(np.searchsorted(cumulative, cumulative[-1] / 2))
    darkest = int(np.flatnonzero(hist)[0])
    if (darkest, background) == (0, 255) or background - darkest < MIN_CONTRAST:
        return img
    scale = 255.0 / (background - darkest)
    return img.point([min(255, max(0, round((v - darkest) * scale))) for v in range(256)])


def load_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Load and validate an image: grayscale "L", dark ink on a white background.

    Accepts a path, encoded bytes (PNG, JPEG, ...), a PIL image or an array (HxW, HxWx1/3/4;
    uint8, uint16, bool or float in [0, 1]). Transparency is composited on white (or on the
    colour of the opaque page, or on black for light ink), 16-bit images are scaled down, a
    mostly dark image (light ink on a dark background) is inverted, and the grey levels are
    stretched so the background is white. Raises :class:`ImageError` naming the file (or
    ``name``, or ``<bytes>``) for a missing, unreadable, truncated, empty or too large image.
    """
    name = _source_name(source, name)
    if isinstance(source, str | Path | bytes):
        img = _open(source, name)
    elif isinstance(source, Image.Image):
        img = _decoded(source, name)
    elif isinstance(source, np.ndarray):
        img = _array_to_image(source, name)
    else:
        raise TypeError(f"{name}: cannot load an image from a {type(source).__name__}")
    return _dark_on_white(_to_gray(img, name))


def _ink_lut(threshold: int) -> list[int]:
    return [255 if v < threshold else 0 for v in range(256)]


def ink_bbox(img: Image.Image, threshold: int = INK_THRESHOLD) -> tuple[int, int, int, int] | None:
    """Box ``(left, top, right, bottom)`` of the pixels darker than ``threshold``; None if none."""
    return img.point(_ink_lut(threshold)).getbbox()


def crop_to_ink(
    img: Image.Image, margin: int = 2, threshold: int = INK_THRESHOLD, name: str | None = None
) -> Image.Image:
    """Crop an "L" image to its ink plus a white margin of ``margin`` pixels on every side.

    Raises :class:`ImageError` ("blank image") when no pixel is darker than ``threshold``.
    """
    box = ink_bbox(img, threshold)
    if box is None:
        raise ImageError(f"{name or '<image>'}: blank image (no ink darker than {threshold}/255)")
    left, top, right, bottom = box
    outer = (max(0, left - margin), max(0, top - margin),
             min(img.width, right + margin), min(img.height, bottom + margin))
    canvas = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), 255)
    canvas.paste(img.crop(outer), (outer[0] - left + margin, outer[1] - top + margin))
    return canvas


def fit_size(width: int, height: int, target_height: int, max_width: int) -> tuple[int, int]:
    """Size ``(w, h)`` of a ``width`` x ``height`` image scaled, aspect kept, to ``target_height``
    (or less, if it would then be wider than ``max_width``)."""
    scale = min(target_height / height, max_width / width)
    return (min(max_width, max(1, round(width * scale))),
            min(target_height, max(1, round(height * scale))))


def _keep_ink_dark(img: Image.Image, darkest: int) -> Image.Image:
    """Stretch grey levels so that the darkest pixel is as dark as ``darkest`` again: shrinking
    averages a stroke thinner than a pixel with the paper around it, and a 1-pixel line shrunk
    from 50 to 48 rows by Lanczos came out lighter than mid-grey. White stays white."""
    darkest_now = img.getextrema()[0]
    if darkest_now <= darkest or darkest_now >= 255:
        return img
    factor = (255 - darkest) / (255 - darkest_now)
    return img.point([round(255 - (255 - v) * factor) if v < 255 else 255 for v in range(256)])


def resize_to_height(img: Image.Image, height: int, max_width: int) -> Image.Image:
    """Scale an "L" image, aspect kept, to ``height`` rows; if it would then be wider than
    ``max_width``, scale it to ``max_width`` instead and pad the height with white (centered)."""
    size = fit_size(img.width, img.height, height, max_width)
    if size != img.size:
        darkest = img.getextrema()[0]
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        img = _keep_ink_dark(img, darkest)
    if img.height == height:
        return img
    canvas = Image.new("L", (img.width, height), 255)
    canvas.paste(img, (0, (height - img.height) // 2))
    return canvas


def bucket_width(width: int, width_step: int) -> int:
    """``width`` rounded up to a multiple of ``width_step`` (at least one step)."""
    return max(1, math.ceil(width / width_step)) * width_step


def pad_width(image: np.ndarray, width: int) -> np.ndarray:
    """Pad an ``[H, W, ...]`` array on the right with white (1.0) to ``width`` columns."""
    if image.shape[1] > width:
        raise ValueError(f"image is {image.shape[1]} pixels wide, more than {width}")
    pad = [(0, 0)] * image.ndim
    pad[1] = (0, width - image.shape[1])
    return np.pad(image, pad, constant_values=1.0)


def content_width(
    source: ImageSource, height: int = INPUT_HEIGHT, max_width: int = 800, name: str | None = None
) -> int:
    """Width of the ink after crop and rescale, before padding: what :func:`prepare_image` gives
    without augmentation is ``bucket_width(content_width(...), width_step)`` wide. Costs a decode
    and an ink box, not a resize."""
    name = _source_name(source, name)
    img = crop_to_ink(load_image(source, name), name=name)
    return fit_size(img.width, img.height, height, max_width)[0]


@dataclass
class Augmenter:
    """Random training distortions on an "L" image before it is cropped (deterministic for an rng).

    Each step is applied with its probability, in this order: a change of resolution (``scale``
    of the source, log-uniform), thicker or thinner strokes (partial dilation / erosion of the
    ink), a slight rotation (white fill), gaussian blur; then the grey levels are stretched as
    :func:`load_image` does for a faint input, so ink washed out by several steps is dark again;
    then gaussian noise and JPEG re-encoding. :meth:`pad` (random white margins) runs after the
    crop, since padding before it would be cropped away.
    """

    stroke_prob: float = 0.3
    scale_prob: float = 0.5
    scale: tuple[float, float] = (0.5, 2.0)
    rotate_prob: float = 0.3
    max_degrees: float = 2.0
    blur_prob: float = 0.3
    blur_radius: tuple[float, float] = (0.3, 1.0)
    noise_prob: float = 0.3
    noise_std: tuple[float, float] = (2.0, 10.0)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)
    pad_prob: float = 0.3
    max_pad: float = 0.25

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """A distorted copy of ``img`` (with a white border so no step clips the ink)."""
        img = ImageOps.expand(img, border=_AUG_BORDER, fill=255)
        img = self._apply(img, rng, (self.scale_prob, self._rescale),
                          (self.stroke_prob, self._strokes), (self.rotate_prob, self._rotate),
                          (self.blur_prob, self._blur))
        return self._apply(_dark_on_white(img), rng, (self.noise_prob, self._noise),
                           (self.jpeg_prob, self._jpeg))

    @staticmethod
    def _apply(img: Image.Image, rng: np.random.Generator, *steps: tuple) -> Image.Image:
        for prob, step in steps:
            if rng.random() < prob:
                img = step(img, rng)
        return img

    def pad(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """With ``pad_prob``, add white margins of up to ``max_pad`` x the height on each side."""
        if rng.random() >= self.pad_prob:
            return img
        most = max(1, round(self.max_pad * img.height))
        return ImageOps.expand(img, border=tuple(rng.integers(0, most + 1, size=4)), fill=255)

    def _strokes(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        # blend with the dilated (thicker) or eroded (thinner) ink: one-pixel lines never vanish
        if rng.random() < 0.5:
            return Image.blend(img, img.filter(ImageFilter.MinFilter(3)), rng.uniform(0.5, 1.0))
        return Image.blend(img, img.filter(ImageFilter.MaxFilter(3)), rng.uniform(0.3, 0.7))

    def _rescale(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        factor = math.exp(rng.uniform(math.log(self.scale[0]), math.log(self.scale[1])))
        size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        if size[0] * size[1] > MAX_PIXELS:
            return img
        filters = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
        return img.resize(size, filters[rng.integers(len(filters))])

    def _rotate(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        angle = rng.uniform(-self.max_degrees, self.max_degrees)
        return img.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=255)

    def _blur(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(rng.uniform(*self.blur_radius)))

    def _noise(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        noise = rng.normal(0.0, rng.uniform(*self.noise_std), size=(img.height, img.width))
        return Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))

    def _jpeg(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=int(rng.integers(self.jpeg_quality[0],
                                                          self.jpeg_quality[1] + 1)))
        return Image.open(buffer).convert("L")


def prepare_image(
    source: ImageSource,
    height: int = INPUT_HEIGHT,
    max_width: int = 800,
    width_step: int = 32,
    augmenter: Augmenter | None = None,
    rng: np.random.Generator | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Image -> model input float32 ``[height, W, 1]`` in [0, 1], ink dark (0) on white (1).

    load -> (augment) -> crop to ink -> rescale to ``height`` with the aspect kept (at most
    ``max_width`` wide) -> pad on the right with white to ``W``, a multiple of ``width_step``.
    """
    name = _source_name(source, name)
    img = load_image(source, name)
    if augmenter is not None:
        rng = rng if rng is not None else np.random.default_rng()
        img = augmenter(img, rng)
    img = crop_to_ink(img, name=name)
    if augmenter is not None:
        img = augmenter.pad(img, rng)
    img = resize_to_height(img, height, max_width)
    array = np.asarray(img, dtype=np.float32)[:, :, None] / 255.0
    return pad_width(array, bucket_width(img.width, width_step))
