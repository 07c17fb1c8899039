"""Tests for img2latex_lib.preprocess: every image kind, bad inputs, crop/rescale/pad, augmenter."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps

from img2latex_lib.preprocess import (
    INK_THRESHOLD,
    INPUT_HEIGHT,
    Augmenter,
    ImageError,
    bucket_width,
    content_width,
    crop_to_ink,
    fit_size,
    ink_bbox,
    load_image,
    pad_width,
    prepare_image,
    resize_to_height,
)


def formula_image() -> Image.Image:
    """Black text and strokes on white, with white space around them."""
    img = Image.new("L", (220, 70), 255)
    draw = ImageDraw.Draw(img)
    draw.text((30, 12), "x^2 + y_1 = \\alpha", fill=0)
    draw.line((30, 35, 150, 35), fill=0, width=2)
    draw.text((60, 40), "a + b", fill=0)
    return img


REFERENCE = formula_image()
REFERENCE_BOX = ink_bbox(REFERENCE)


def encoded(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def rgba_on_transparent(ink_rgb: tuple[int, int, int]) -> Image.Image:
    """Ink of colour ``ink_rgb`` drawn only by its alpha: the colour is the same everywhere."""
    rgba = Image.new("RGBA", REFERENCE.size, ink_rgb)
    rgba.putalpha(ImageOps.invert(REFERENCE))
    return rgba


def dark_mode() -> Image.Image:
    """Light grey ink on a dark grey background, like a dark-mode screenshot."""
    arr = np.asarray(REFERENCE, dtype=np.float64) / 255
    rgb = 220 - arr[..., None] * (220 - np.array([30, 32, 36]))
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def palette_transparent() -> Image.Image:
    """A palette image whose background index is transparent (and black, like the ink)."""
    pal = REFERENCE.point(lambda v: 0 if v < 128 else 1).convert("P")
    pal.putpalette([0, 0, 0, 0, 0, 0])
    pal.info["transparency"] = 1
    return pal


IMAGE_KINDS = {
    "RGB": lambda: encoded(REFERENCE.convert("RGB")),
    "RGBA transparent, black ink": lambda: encoded(rgba_on_transparent((0, 0, 0))),
    "RGBA transparent, white ink": lambda: encoded(rgba_on_transparent((255, 255, 255))),
    "LA": lambda: encoded(rgba_on_transparent((0, 0, 0)).convert("LA")),
    "L": lambda: encoded(REFERENCE),
    "1": lambda: encoded(REFERENCE.convert("1", dither=Image.Dither.NONE)),
    "I;16": lambda: encoded(Image.fromarray(np.asarray(REFERENCE).astype(np.uint16) * 257)),
    "P": lambda: encoded(REFERENCE.convert("RGB").convert("P")),
    "P transparent": lambda: encoded(palette_transparent()),
    "JPEG": lambda: encoded(REFERENCE.convert("RGB"), "JPEG", quality=90),
    "dark mode": lambda: encoded(dark_mode()),
    "grey ink": lambda: encoded(REFERENCE.point(lambda v: 150 + v * 105 // 255)),
    "array uint8 RGB": lambda: np.asarray(REFERENCE.convert("RGB")),
    "array float [0, 1]": lambda: np.asarray(REFERENCE, dtype=np.float32)[..., None] / 255,
    "array bool": lambda: np.asarray(REFERENCE) > 127,
    "array uint16": lambda: np.asarray(REFERENCE).astype(np.uint16) * 257,
    "PIL CMYK": lambda: REFERENCE.convert("CMYK"),
}


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_every_kind_loads_as_dark_ink_on_white(kind: str) -> None:
    img = load_image(IMAGE_KINDS[kind]())
    arr = np.asarray(img)
    assert img.mode == "L"
    assert img.size == REFERENCE.size
    assert np.median(arr) == 255  # white background
    assert arr.min() < 64  # dark ink
    box = ink_bbox(img)
    assert box is not None
    assert max(abs(a - b) for a, b in zip(box, REFERENCE_BOX, strict=True)) <= 1, kind


def test_files_and_bytes_load_the_same(tmp_path: Path) -> None:
    path = tmp_path / "formula.png"
    REFERENCE.save(path)
    from_path = np.asarray(load_image(path))
    assert np.array_equal(from_path, np.asarray(load_image(str(path))))
    assert np.array_equal(from_path, np.asarray(load_image(path.read_bytes())))
    assert np.array_equal(from_path, np.asarray(REFERENCE))


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display rotated 90 degrees clockwise
    data = encoded(REFERENCE.rotate(90, expand=True).convert("RGB"), "JPEG", quality=95,
                   exif=exif.tobytes())
    assert load_image(data).size == REFERENCE.size


def png_with_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (its pixel data is far too short)."""
    data = bytearray(encoded(Image.new("L", (1, 1), 255)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


BAD_FILES = {
    "not_an_image.png": (lambda: b"formula: x^2\n" * 10, "not an image"),
    "truncated.png": (lambda: encoded(REFERENCE)[:200], "truncated"),
    "blank.png": (lambda: encoded(Image.new("RGB", (120, 40), "white")), "blank"),
    "all_black.png": (lambda: encoded(Image.new("L", (120, 40), 0)), "blank"),
    "huge.png": (lambda: png_with_size(20000, 20000), "too large"),
    "over_limit.png": (lambda: png_with_size(8000, 8000), "megapixels"),
    "zero_width.png": (lambda: png_with_size(0, 40), "not an image"),
    "empty.png": (lambda: b"", "not an image"),
}


@pytest.mark.parametrize("file_name", BAD_FILES)
def test_bad_file_gives_one_line_error_naming_it(tmp_path: Path, file_name: str) -> None:
    make, problem = BAD_FILES[file_name]
    path = tmp_path / file_name
    path.write_bytes(make())
    with pytest.raises(ImageError, match=problem) as info:
        prepare_image(path)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert "\n" not in message


def test_bad_bytes_are_named_bytes_or_the_given_name() -> None:
    with pytest.raises(ImageError, match=r"^<bytes>: not an image"):
        load_image(b"not an image")
    with pytest.raises(ImageError, match=r"^upload\.png: truncated"):
        load_image(encoded(REFERENCE)[:200], name="upload.png")


def test_lazily_opened_truncated_image_is_named() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (100, 300), dtype=np.uint8)
    lazy = Image.open(io.BytesIO(encoded(Image.fromarray(noise))[:2000]))
    with pytest.raises(ImageError, match="^lazy.png: truncated"):
        load_image(lazy, name="lazy.png")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="missing.png: file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    "source", [Image.new("L", (0, 5)), np.zeros((0, 5), np.uint8), np.zeros((5, 0, 3), np.uint8)]
)
def test_zero_size_image(source: Image.Image | np.ndarray) -> None:
    with pytest.raises(ImageError, match="zero-size"):
        load_image(source)


def test_bad_arrays() -> None:
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((4, 4), np.nan))
    with pytest.raises(TypeError, match="list"):
        load_image([[0, 255]])


def test_crop_to_ink_adds_exact_white_margin_even_at_the_edges() -> None:
    img = Image.new("L", (50, 30), 255)
    img.paste(0, (0, 10, 20, 30))  # ink touches the left and bottom edges
    cropped = crop_to_ink(img, margin=3)
    assert cropped.size == (26, 26)
    arr = np.asarray(cropped)
    assert (arr[3:-3, 3:-3] == 0).all()
    assert (arr[:3] == 255).all() and (arr[:, :3] == 255).all() and (arr[-3:] == 255).all()
    with pytest.raises(ImageError, match="^scan.png: blank image"):
        crop_to_ink(Image.new("L", (10, 10), 250), name="scan.png")


def test_resize_keeps_the_aspect_ratio() -> None:
    assert resize_to_height(Image.new("L", (300, 50), 0), 48, 800).size == (288, 48)
    assert resize_to_height(Image.new("L", (30, 100), 0), 48, 800).size == (14, 48)
    wide = resize_to_height(Image.new("L", (2000, 40), 0), 48, 800)
    assert wide.size == (800, 48)
    rows = np.flatnonzero((np.asarray(wide) < 128).any(axis=1))
    assert len(rows) == 16 and rows[0] == 16  # 40 * 800 / 2000 rows of ink, centered


def test_prepare_image_does_not_stretch() -> None:
    img = Image.new("L", (400, 200), 255)
    img.paste(0, (50, 80, 150, 105))  # a 100 x 25 block of ink
    arr = prepare_image(img, height=48, width_step=32)
    assert arr.shape == (48, 192, 1) and arr.dtype == np.float32
    ink = arr[..., 0] < 0.5
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    scale = 48 / 29  # ink plus a 2-pixel margin above and below fills the height
    assert abs(len(rows) - 25 * scale) <= 1.5
    assert abs(len(cols) - 100 * scale) <= 1.5
    assert cols[0] <= 4  # left-aligned; the padding is on the right
    assert (arr[:, round(104 * scale) :] == 1.0).all()


@settings(max_examples=25, deadline=None)
@example(ink_width=1, ink_height=50, width_step=32, height=48)  # a 1-px stroke, shrunk a little
@given(
    ink_width=st.integers(1, 600), ink_height=st.integers(1, 120),
    width_step=st.sampled_from([8, 16, 32]), height=st.sampled_from([32, 48, 64]),
)
def test_prepared_shape_and_width_bucket(
    ink_width: int, ink_height: int, width_step: int, height: int
) -> None:
    img = Image.new("L", (ink_width + 20, ink_height + 20), 255)
    img.paste(0, (10, 10, 10 + ink_width, 10 + ink_height))
    arr = prepare_image(img, height=height, max_width=640, width_step=width_step)
    assert arr.shape[0] == height and arr.shape[2] == 1
    assert arr.shape[1] % width_step == 0 and arr.shape[1] <= 640
    assert arr.shape[1] == bucket_width(content_width(img, height, 640), width_step)
    assert 0.0 <= arr.min() and arr.max() <= 1.0 and arr.min() < 0.5
    cropped = (ink_width + 4, ink_height + 4)  # ink plus the 2-pixel margins
    scale = min(height / cropped[1], 640 / cropped[0])
    fitted = fit_size(*cropped, height, 640)  # one scale for both axes, up to rounding
    assert abs(fitted[0] - cropped[0] * scale) <= 0.5 + 1e-9
    assert abs(fitted[1] - max(1, cropped[1] * scale)) <= 0.5 + 1e-9


def test_bucket_and_pad_width() -> None:
    assert [bucket_width(w, 32) for w in (1, 32, 33, 64, 65)] == [32, 32, 64, 64, 96]
    padded = pad_width(np.zeros((4, 3, 1), np.float32), 5)
    assert padded.shape == (4, 5, 1) and (padded[:, 3:] == 1.0).all() and (padded[:, :3] == 0).all()
    with pytest.raises(ValueError, match="wide"):
        pad_width(np.zeros((4, 6, 1)), 5)


ALWAYS = Augmenter(stroke_prob=1, scale_prob=1, rotate_prob=1, blur_prob=1, noise_prob=1,
                   jpeg_prob=1, pad_prob=1)


def test_augmenter_is_deterministic_for_a_seed() -> None:
    first = prepare_image(REFERENCE, augmenter=ALWAYS, rng=np.random.default_rng(7))
    again = prepare_image(REFERENCE, augmenter=ALWAYS, rng=np.random.default_rng(7))
    other = prepare_image(REFERENCE, augmenter=ALWAYS, rng=np.random.default_rng(8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, prepare_image(REFERENCE))


@pytest.mark.parametrize("seed", range(12))
def test_augmenter_keeps_the_ink(seed: int) -> None:
    rng = np.random.default_rng(seed)
    augmented = ALWAYS(load_image(REFERENCE), rng)
    cropped = crop_to_ink(augmented)
    aspect = cropped.width / cropped.height
    reference = crop_to_ink(REFERENCE)
    assert aspect == pytest.approx(reference.width / reference.height, rel=0.25)
    assert (np.asarray(cropped) < 100).mean() > 0.02  # strokes are still there
    arr = prepare_image(REFERENCE, augmenter=ALWAYS, rng=rng)
    assert arr.shape[0] == INPUT_HEIGHT and arr.shape[1] % 32 == 0


def test_augmenter_steps_each_change_the_image() -> None:
    img = load_image(REFERENCE)
    for step in ("stroke", "scale", "rotate", "blur", "noise", "jpeg"):
        only = Augmenter(**{f"{f}_prob": float(f == step) for f in
                            ("stroke", "scale", "rotate", "blur", "noise", "jpeg", "pad")})
        out = only(img, np.random.default_rng(1))
        bordered = ImageOps.expand(img, border=8, fill=255)
        assert out.size != bordered.size or not np.array_equal(np.asarray(out),
                                                               np.asarray(bordered)), step


def test_real_val_images_keep_their_ink_and_aspect(val_dir: Path) -> None:
    for path in sorted((val_dir / "images").glob("1?.png")):  # ten small ids, all < 7475
        original = np.asarray(Image.open(path).convert("L"))
        rows = np.flatnonzero((original < INK_THRESHOLD).any(axis=1))
        cols = np.flatnonzero((original < INK_THRESHOLD).any(axis=0))
        arr = prepare_image(path)
        assert arr.shape[0] == INPUT_HEIGHT and arr.shape[1] % 32 == 0
        ink = arr[..., 0] < INK_THRESHOLD / 255
        expected = (cols[-1] - cols[0] + 5) / (rows[-1] - rows[0] + 5)  # with the margins
        width = content_width(path)
        assert width == pytest.approx(min(800, INPUT_HEIGHT * expected), rel=0.05, abs=1), path.name
        assert ink.any(axis=0).nonzero()[0][-1] < width


# --- fuzzing: nothing a user can hand in raises anything but ImageError -----------------------

_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "La", "RGBa")


def _encoded(mode: str, size: tuple[int, int], data: bytes, fmt: str) -> bytes:
    """An image of ``mode`` and ``size`` with ``data`` as its pixels, encoded as ``fmt``."""
    image = Image.frombytes(mode, size, (data * (1 + 8 * size[0] * size[1] // max(1, len(data))))
                            [: len(Image.new(mode, size).tobytes())])
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode: send raw pixels
        return image.tobytes()
    return buffer.getvalue()


def _load_and_prepare(source) -> None:
    """load_image and prepare_image may refuse an input only with ImageError."""
    try:
        image = load_image(source, name="fuzz")
        assert image.mode == "L"
        prepare_image(image, name="fuzz")
    except ImageError as error:
        assert str(error).startswith("fuzz: ") and "\n" not in str(error)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.binary(max_size=2000))
@example(b"\x1c\x01\x00\x85")  # an IPTC header whose plugin raised OSError from Image.open
def test_random_bytes_never_raise_anything_but_image_error(data: bytes) -> None:
    _load_and_prepare(data)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(mode=st.sampled_from(_MODES), width=st.integers(1, 300), height=st.integers(1, 120),
       pixels=st.binary(min_size=1, max_size=64), fmt=st.sampled_from(["PNG", "JPEG", "GIF",
                                                                         "BMP", "TIFF", "WEBP"]),
       cut=st.integers(0, 4000))
def test_random_images_sizes_modes_and_truncations_load_or_fail_cleanly(
        mode: str, width: int, height: int, pixels: bytes, fmt: str, cut: int) -> None:
    encoded = _encoded(mode, (width, height), pixels, fmt)
    _load_and_prepare(encoded)
    _load_and_prepare(encoded[: cut])  # truncated anywhere, to nothing at all


@settings(max_examples=60, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(0, 40), min_size=1, max_size=4),
       dtype=st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool"]),
       seed=st.integers(0, 2**16), special=st.sampled_from([None, np.nan, np.inf, -1.0, 1e9]))
def test_random_arrays_load_or_fail_cleanly(shape: list[int], dtype: str, seed: int,
                                            special: float | None) -> None:
    values = np.random.default_rng(seed).uniform(0, 300, size=shape)
    if special is not None and values.size:
        values.flat[0] = special
    with np.errstate(invalid="ignore", over="ignore"):
        array = values.astype(dtype)
    _load_and_prepare(array)
