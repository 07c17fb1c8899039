"""Padding waste of bucketed vs random batches, and preprocessing speed, on the real val images.

Usage: python benchmarks/padding.py [--batch-size 32] [--speed-images 1000]

Reads data/im2latex100k_val (ids < 7475 only: the rest is the development test set) and skips
with a message when it is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from img2latex_lib.batching import BucketedDataset, padding_fraction, random_batches
from img2latex_lib.preprocess import Augmenter, content_width, prepare_image
from img2latex_lib.tokenizer import MAX_LEN, Vocab, tokenize

DATA = Path("data") / "im2latex100k_val"
FIRST_TEST_ID = 7475


def load_val(root: Path) -> tuple[list[Path], list[str]]:
    """Image paths and formulas of the val samples with ids below FIRST_TEST_ID."""
    formulas = (root / "formulas.norm.lst").read_text(encoding="utf-8").split("\n")
    images, texts = [], []
    for line in (root / "matching.txt").read_text().splitlines():
        image, formula_line = line.split()
        if int(Path(image).stem) < FIRST_TEST_ID:
            images.append(root / "images" / image)
            texts.append(formulas[int(formula_line)])
    return images, texts


def rate(function, items: list) -> float:
    """Items per second of ``function`` over ``items``."""
    start = time.perf_counter()
    for item in items:
        function(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--speed-images", type=int, default=1000)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1] / DATA
    if not root.is_dir():
        print(f"{DATA} not found: nothing to measure (link the im2latex-100k val split there)")
        sys.exit(0)

    images, formulas = load_val(root)
    keep = [i for i, f in enumerate(formulas) if len(tokenize(f)) <= MAX_LEN]
    images, formulas = [images[i] for i in keep], [formulas[i] for i in keep]
    vocab = Vocab.build(formulas)
    print(
        f"{len(images)} val samples (ids < {FIRST_TEST_ID}, <= {MAX_LEN} tokens), "
        f"batch size {args.batch_size}"
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped images are listed below
        start = time.perf_counter()
        ds = BucketedDataset(images, formulas, vocab, batch_size=args.batch_size)
        built = time.perf_counter() - start
        start = time.perf_counter()
        BucketedDataset(images, formulas, vocab, batch_size=args.batch_size)
        rebuilt = time.perf_counter() - start
    print(
        f"dataset: measured {len(ds.widths)} widths in {built:.1f} s "
        f"({len(images) / built:.0f} images/s); built again from the width cache in "
        f"{rebuilt:.2f} s"
    )
    for index, message in ds.skipped:
        print(f"  skipped {images[index].name}: {message.split(': ', 1)[1]}")

    rng = np.random.default_rng(0)
    epochs = 5
    rows = {"bucketed": [], "random": []}
    for _ in range(epochs):
        rows["bucketed"].append(ds.padding_stats())
        ds.on_epoch_end()
        batches = random_batches(len(ds.widths), args.batch_size, rng)
        rows["random"].append(padding_fraction(batches, ds.widths, ds.lengths, ds.width_step,
                                               ds.length_step))
    print(f"\npadding share, mean of {epochs} epochs   pixels   tokens")
    for name, stats in rows.items():
        pixels = np.mean([s["pixels"] for s in stats])
        tokens = np.mean([s["tokens"] for s in stats])
        print(f"  {name:<36} {pixels:6.1%}   {tokens:6.1%}")

    sample = ds.images[: args.speed_images]
    augmenter = Augmenter()
    aug_rng = np.random.default_rng(0)
    print(f"\npreprocessing speed, one process, {len(sample)} images")
    print(f"  content_width (decode + ink box)     {rate(content_width, sample):7.0f} images/s")
    print(f"  prepare_image                        {rate(prepare_image, sample):7.0f} images/s")
    augmented = rate(lambda p: prepare_image(p, augmenter=augmenter, rng=aug_rng), sample)
    print(f"  prepare_image + Augmenter()          {augmented:7.0f} images/s")
    start = time.perf_counter()
    n_batches = min(len(ds), max(1, len(sample) // args.batch_size))
    for index in range(n_batches):
        ds[index]
    per_batch = (time.perf_counter() - start) / n_batches
    print(f"  BucketedDataset batch of {args.batch_size}             {per_batch * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
