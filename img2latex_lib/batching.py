"""Batches of (image, formula) pairs grouped by image width and token length.

:class:`BucketedDataset` measures each image's width once, at construction, from a decode and
an ink box (no resize): on the real validation images that is about twice as fast as the full
:func:`~img2latex_lib.preprocess.prepare_image` (``benchmarks/padding.py``) and keeps one integer
per image, where caching the prepared arrays would take about 15 KB per image (over 1 GB for the
im2latex-100k training set) and is useless under augmentation. Widths
of image files are also kept for the session (keyed by path, modification time, size and
``height``/``max_width``), so building the same dataset again costs nothing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from img2latex_lib.preprocess import (
    INPUT_HEIGHT,
    Augmenter,
    ImageError,
    bucket_width,
    content_width,
    pad_width,
    prepare_image,
)
from img2latex_lib.tokenizer import PAD_ID, Vocab, tokenize

_WIDTH_CACHE: dict[tuple, int] = {}


def batch_images(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack prepared images ``[H, W_i, 1]`` (or ``[H, W_i]``) into one float32 batch
    ``[B, H, max W_i, 1]``, padding each on the right with white (1.0)."""
    if len(arrays) == 0:
        raise ValueError("no images to batch")
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    arrays = [a[:, :, None] if a.ndim == 2 else a for a in arrays]
    shapes = {(a.shape[0], a.ndim, a.shape[-1]) for a in arrays}
    if len(shapes) != 1 or next(iter(shapes))[1:] != (3, 1):
        raise ValueError(
            f"images must all be [H, W, 1] with the same height; got shapes "
            f"{sorted({a.shape for a in arrays})[:4]}"
        )
    width = max(a.shape[1] for a in arrays)
    return np.stack([pad_width(a, width) for a in arrays])


def padding_fraction(
    batches: Sequence[np.ndarray], widths: np.ndarray, lengths: np.ndarray, width_step: int,
    length_step: int = 1,
) -> dict[str, float]:
    """Share of padding in ``batches`` (arrays of sample indices).

    ``pixels``: image columns beyond each image's content width (rounding up to a bucket and
    padding to the batch's widest image; all images have the same height). ``tokens``: pad
    tokens among the decoder inputs (padded to the batch's longest, rounded up to a multiple of
    ``length_step``). ``widths`` and ``lengths`` are per sample.
    """
    padded_px = used_px = padded_tokens = used_tokens = 0
    for batch in batches:
        padded_px += len(batch) * bucket_width(int(widths[batch].max()), width_step)
        used_px += int(widths[batch].sum())
        padded_tokens += len(batch) * bucket_width(int(lengths[batch].max()), length_step)
        used_tokens += int(lengths[batch].sum())
    return {"pixels": 1 - used_px / padded_px, "tokens": 1 - used_tokens / padded_tokens}


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of a random permutation of ``range(n)`` (the baseline bucketing is compared to)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _measured_width(source: str | Path | np.ndarray, height: int, max_width: int,
                    cache: bool) -> int:
    """:func:`content_width`, remembered for image files when ``cache`` is set."""
    if not cache or not isinstance(source, str | Path):
        return content_width(source, height, max_width)
    try:
        stat = Path(source).stat()
    except OSError:
        return content_width(source, height, max_width)  # raises ImageError naming the file
    key = (str(Path(source).resolve()), stat.st_mtime_ns, stat.st_size, height, max_width)
    if key not in _WIDTH_CACHE:
        _WIDTH_CACHE[key] = content_width(source, height, max_width)
    return _WIDTH_CACHE[key]


class BucketedDataset(keras.utils.PyDataset):
    """``((images [B, H, W, 1], decoder_inputs [B, L]), targets [B, L])`` batches for ``fit``.

    Samples are ordered by (width bucket, token length bucket of ``length_step`` tokens), in a
    random order within each group, and cut into batches of ``batch_size``, so a batch mixes two
    groups only where one group ends; the batch order is shuffled. Each epoch
    (:meth:`on_epoch_end`) draws a new order, deterministic for ``seed``; augmentation uses one
    generator per (seed, epoch, sample), so batches do not depend on worker scheduling.
    ``decoder_inputs`` are the ids ``<sos> ...`` and ``targets`` the ids ``... <eos>``, padded with
    ``PAD_ID`` (0) to the batch's longest formula rounded up to a multiple of ``length_step``;
    images are padded with white to the batch's widest, a multiple of ``width_step`` (large
    steps leave a compiling backend such as JAX few shapes). Unusable images (blank, corrupt,
    ...) are skipped with a warning and listed in ``skipped`` as ``(index, message)``, or raise
    if ``skip_bad_images`` is False. ``**kwargs`` (``workers``, ``use_multiprocessing``,
    ``max_queue_size``) go to ``PyDataset``.
    """

    def __init__(
        self,
        images: Sequence[str | Path | np.ndarray],
        formulas: Sequence[str],
        vocab: Vocab,
        batch_size: int = 32,
        height: int = INPUT_HEIGHT,
        max_width: int = 800,
        width_step: int = 32,
        max_len: int = 150,
        shuffle: bool = True,
        augmenter: Augmenter | None = None,
        seed: int = 0,
        cache_widths: bool = True,
        length_step: int = 8,
        skip_bad_images: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(images) != len(formulas):
            raise ValueError(f"{len(images)} images but {len(formulas)} formulas")
        if batch_size < 1 or length_step < 1 or width_step < 1:
            raise ValueError("batch_size, length_step and width_step must be positive")
        self.batch_size, self.height, self.max_width = batch_size, height, max_width
        self.width_step, self.length_step = width_step, length_step
        self.shuffle, self.augmenter, self.seed, self.epoch = shuffle, augmenter, seed, 0

        tokens = [tokenize(formula) for formula in formulas]
        too_long = [i for i, t in enumerate(tokens) if len(t) > max_len]
        if too_long:
            raise ValueError(
                f"{len(too_long)} formulas have more than max_len={max_len} tokens (first: "
                f"sample {too_long[0]}); filter them out first"
            )
        self.skipped: list[tuple[int, str]] = []
        widths: list[int] = []
        kept: list[int] = []
        for i, image in enumerate(images):
            try:
                widths.append(_measured_width(image, height, max_width, cache_widths))
                kept.append(i)
            except ImageError as error:
                if not skip_bad_images:
                    raise
                self.skipped.append((i, str(error)))
        if self.skipped:
            warnings.warn(
                f"skipped {len(self.skipped)} unusable images (first: {self.skipped[0][1]}); "
                "see BucketedDataset.skipped", stacklevel=2
            )
        if not kept:
            raise ValueError("no usable samples to batch")
        self.images = [images[i] for i in kept]
        self.ids = [np.asarray(vocab.encode(tokens[i], max_len), dtype=np.int32) for i in kept]
        #: Content width (pixels, before rounding to a bucket) and decoder length of each sample.
        self.widths = np.asarray(widths)
        self.lengths = np.asarray([len(ids) - 1 for ids in self.ids])
        self.batches = self._make_batches()

    def _make_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.images)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        width_bucket = (self.widths[order] + self.width_step - 1) // self.width_step
        length_bucket = (self.lengths[order] + self.length_step - 1) // self.length_step
        order = order[np.lexsort((length_bucket, width_bucket))]  # stable: random within groups
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        batch = self.batches[index]
        arrays = []
        for i in batch:
            rng = None
            if self.augmenter is not None:
                rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            arrays.append(prepare_image(self.images[i], self.height, self.max_width,
                                        self.width_step, self.augmenter, rng))
        length = bucket_width(int(self.lengths[batch].max()), self.length_step)
        decoder_inputs = np.full((len(batch), length), PAD_ID, dtype=np.int32)
        targets = np.full((len(batch), length), PAD_ID, dtype=np.int32)
        for row, i in enumerate(batch):
            ids = self.ids[i]
            decoder_inputs[row, : len(ids) - 1] = ids[:-1]
            targets[row, : len(ids) - 1] = ids[1:]
        return (batch_images(arrays), decoder_inputs), targets

    def on_epoch_end(self) -> None:
        """Draw the next epoch's batches (and augmentation)."""
        self.set_epoch(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Batches and augmentation of epoch ``epoch`` (a resumed run sees the same order)."""
        self.epoch = epoch
        if self.shuffle:
            self.batches = self._make_batches()

    def padding_stats(self) -> dict[str, float]:
        """Share of pad pixels and pad tokens in this epoch's batches (see
        :func:`padding_fraction`)."""
        return padding_fraction(self.batches, self.widths, self.lengths, self.width_step,
                                self.length_step)
