"""Training packs: a data set's images and formulas in one small compressed file.

A pack carries tens of thousands of formula images in a few MB (about 400-700 bytes each) to a
machine that has none of the rendered folders, such as a lent accelerator that receives only a
checkout of the repository. Each image is cropped to its ink, scaled down to at most
``max_height`` pixels (twice the model's input height by default, so augmentation and the final
resize still see detail) and quantised to ``levels`` grey levels; the arrays and the formulas are
stored as one LZMA-compressed ``.npz``. :func:`read_pack` gives back uint8 arrays, dark ink on
white, that :class:`~img2latex_lib.batching.BucketedDataset` takes like image files.
"""

from __future__ import annotations

import io
import lzma
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .datasets import atomic_write
from .preprocess import (
    INPUT_HEIGHT,
    ImageError,
    ImageSource,
    crop_to_ink,
    load_image,
    resize_to_height,
)

PACK_SUFFIX = ".pack"
FORMAT_VERSION = 1


class PackError(ValueError):
    """A pack file is missing, corrupt or of another format."""


def shrink_image(source: ImageSource, max_height: int = 2 * INPUT_HEIGHT,
                 levels: int = 16) -> np.ndarray:
    """One image as a pack stores it: cropped to its ink, at most ``max_height`` pixels high
    (never enlarged), grey values rounded to ``levels`` levels; uint8 ``[H, W]``."""
    img = crop_to_ink(load_image(source))
    if img.height > max_height:
        img = resize_to_height(img, max_height, max_width=10**6)
    step = 255 / (levels - 1)
    return (np.round(np.asarray(img, dtype=np.float32) / step) * step).round().astype(np.uint8)


def _shrink_all(sources: Sequence[ImageSource], max_height: int, levels: int
                ) -> list[np.ndarray | str]:
    """:func:`shrink_image` of each source, or the one-line error of an unusable one."""
    results: list[np.ndarray | str] = []
    for source in sources:
        try:
            results.append(shrink_image(source, max_height, levels))
        except ImageError as error:
            results.append(str(error))
    return results


def write_pack(path: str | Path, images: Sequence[ImageSource], formulas: Sequence[str],
               max_height: int = 2 * INPUT_HEIGHT, levels: int = 16, workers: int = 1
               ) -> dict[str, int]:
    """Shrink ``images`` and write them with their ``formulas`` to ``path`` (atomically).

    Unusable images are left out. Returns counts: ``packed``, ``skipped`` and ``bytes``.
    """
    if len(images) != len(formulas):
        raise ValueError(f"{len(images)} images but {len(formulas)} formulas")
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256, not {levels}")
    chunks = [images[i : i + 256] for i in range(0, len(images), 256)]
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_shrink_all, chunks, [max_height] * len(chunks),
                                  [levels] * len(chunks)))
    else:
        parts = [_shrink_all(chunk, max_height, levels) for chunk in chunks]
    shrunk = [item for part in parts for item in part]
    kept = [i for i, item in enumerate(shrunk) if not isinstance(item, str)]
    if not kept:
        raise ValueError(f"{path}: none of the {len(images)} images is usable")
    arrays = [shrunk[i] for i in kept]
    buffer = io.BytesIO()
    np.savez(buffer, version=np.int32(FORMAT_VERSION),
             shapes=np.asarray([a.shape for a in arrays], dtype=np.int32),
             pixels=np.concatenate([a.ravel() for a in arrays]),
             formulas=np.asarray([formulas[i] for i in kept], dtype=str))
    data = lzma.compress(buffer.getvalue(), preset=6)
    atomic_write(Path(path), data)
    return {"packed": len(kept), "skipped": len(images) - len(kept), "bytes": len(data)}


def read_pack(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """Images (uint8 ``[H, W]``) and formulas of a pack written by :func:`write_pack`."""
    path = Path(path)
    try:
        with np.load(io.BytesIO(lzma.decompress(path.read_bytes()))) as stored:
            if int(stored["version"]) != FORMAT_VERSION:
                raise PackError(f"{path}: pack format {int(stored['version'])}, expected "
                                f"{FORMAT_VERSION}")
            shapes, pixels = stored["shapes"], stored["pixels"]
            formulas = [str(f) for f in stored["formulas"]]
    except FileNotFoundError:
        raise PackError(f"{path}: pack file not found") from None
    except (lzma.LZMAError, OSError, ValueError, KeyError, EOFError) as error:
        if isinstance(error, PackError):
            raise
        raise PackError(f"{path}: not a readable pack ({error})") from None
    sizes = shapes[:, 0] * shapes[:, 1]
    if len(shapes) != len(formulas) or int(sizes.sum()) != pixels.size:
        raise PackError(f"{path}: pack is inconsistent (shapes, pixels and formulas disagree)")
    ends = np.cumsum(sizes)
    images = [pixels[end - size : end].reshape(shape)
              for end, size, shape in zip(ends, sizes, shapes, strict=True)]
    return images, formulas
