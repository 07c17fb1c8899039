"""Tests for img2latex_lib.batching: batch contents, bucketing, determinism, keras fit."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from img2latex_lib.batching import BucketedDataset, batch_images, padding_fraction, random_batches
from img2latex_lib.preprocess import INPUT_HEIGHT, Augmenter, ImageError, bucket_width
from img2latex_lib.tokenizer import EOS_ID, PAD_ID, SOS_ID, Vocab, tokenize

SYMBOLS = ["x", "y", "+", "=", r"\alpha", "^", "{", "}", "2"]


def sample(i: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An image whose ink width grows with its formula's length, like real formulas."""
    n_tokens = int(rng.integers(1, 60))
    formula = " ".join([str(i % 10), *rng.choice(SYMBOLS, n_tokens - 1)])
    image = np.full((40, 700), 255, np.uint8)
    width = min(680, 10 * n_tokens + int(rng.integers(0, 40)))
    image[10:30, 10 : 10 + width] = 0
    image[18:22, 10 + width // 2] = 255  # a notch, so images differ inside
    return image, f"{formula} % {i}"


@pytest.fixture(scope="module")
def data() -> tuple[list[np.ndarray], list[str], Vocab]:
    rng = np.random.default_rng(0)
    images, formulas = zip(*(sample(i, rng) for i in range(150)), strict=True)
    return list(images), list(formulas), Vocab.build(formulas)


def test_batch_shapes_and_shifted_targets(data) -> None:
    images, formulas, vocab = data
    ds = BucketedDataset(images, formulas, vocab, batch_size=16)
    assert len(ds) == 10
    for index in range(len(ds)):
        (x, decoder_inputs), targets = ds[index]
        batch = ds.batches[index]
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[0] == len(batch)
        assert x.shape[1:] == (INPUT_HEIGHT, x.shape[2], 1) and x.shape[2] % 32 == 0
        assert decoder_inputs.dtype == np.int32 and targets.dtype == np.int32
        padded = bucket_width(int(ds.lengths[batch].max()), ds.length_step)  # a multiple of 8
        assert decoder_inputs.shape == targets.shape == (len(batch), padded)
        for row, i in enumerate(batch):
            ids = vocab.encode(formulas[i])
            n = len(ids) - 1
            assert decoder_inputs[row, :n].tolist() == ids[:-1]
            assert targets[row, :n].tolist() == ids[1:]
            assert decoder_inputs[row, 0] == SOS_ID and targets[row, n - 1] == EOS_ID
            assert (decoder_inputs[row, n:] == PAD_ID).all() and (targets[row, n:] == PAD_ID).all()
            own_width = bucket_width(int(ds.widths[i]), 32)
            assert (x[row, :, own_width:] == 1.0).all()  # padded with white
            assert x[row, :, :own_width].min() < 0.5


def test_every_sample_once_per_epoch(data) -> None:
    images, formulas, vocab = data
    ds = BucketedDataset(images, formulas, vocab, batch_size=16, seed=3)
    for _ in range(3):
        assert sorted(np.concatenate(ds.batches).tolist()) == list(range(len(formulas)))
        seen = []
        for index in range(len(ds)):
            _, targets = ds[index]
            seen += [vocab.decode(row) for row in targets]
        assert sorted(seen) == sorted(" ".join(tokenize(f)) for f in formulas)
        ds.on_epoch_end()


def test_bucketing_pads_less_than_random_batches(data) -> None:
    images, formulas, vocab = data
    ds = BucketedDataset(images, formulas, vocab, batch_size=16)
    bucketed = ds.padding_stats()
    baseline = padding_fraction(random_batches(len(formulas), 16, np.random.default_rng(0)),
                                ds.widths, ds.lengths, 32)
    assert bucketed["pixels"] < baseline["pixels"] / 2
    assert bucketed["tokens"] < baseline["tokens"] / 2
    widest = [bucket_width(int(ds.widths[b].max()), 32) for b in ds.batches]
    assert [ds[i][0][0].shape[2] for i in range(len(ds))] == widest


def test_deterministic_for_a_seed_and_new_order_each_epoch(data) -> None:
    images, formulas, vocab = data
    augmenter = Augmenter()
    make = lambda seed: BucketedDataset(  # noqa: E731
        images[:40], formulas[:40], vocab, batch_size=8, augmenter=augmenter, seed=seed
    )
    first, again, other = make(1), make(1), make(2)
    assert [b.tolist() for b in first.batches] == [b.tolist() for b in again.batches]
    assert [b.tolist() for b in first.batches] != [b.tolist() for b in other.batches]
    (x1, _), _ = first[2]
    (x2, _), _ = again[2]
    assert np.array_equal(x1, x2)
    before = [b.tolist() for b in first.batches]
    first.on_epoch_end()
    assert [b.tolist() for b in first.batches] != before
    unshuffled = BucketedDataset(images[:40], formulas[:40], vocab, batch_size=8, shuffle=False)
    buckets = [bucket_width(int(w), 32) for w in unshuffled.widths[np.concatenate(
        unshuffled.batches)]]
    assert buckets == sorted(buckets)


def test_too_long_formulas_are_refused(data) -> None:
    images, formulas, vocab = data
    long_formulas = list(formulas[:10])
    long_formulas[3] = long_formulas[7] = " ".join(["x"] * 151)
    with pytest.raises(ValueError, match="2 formulas have more than max_len=150"):
        BucketedDataset(images[:10], long_formulas, vocab)
    with pytest.raises(ValueError, match="10 images but 9 formulas"):
        BucketedDataset(images[:10], formulas[:9], vocab)


def test_bad_images_are_skipped_or_raise(tmp_path: Path, data) -> None:
    images, formulas, vocab = data
    good = tmp_path / "good.png"
    Image.fromarray(images[0]).save(good)
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 20), 255).save(blank)
    paths = [good, blank, tmp_path / "missing.png"]
    with pytest.warns(UserWarning, match="skipped 2 unusable images"):
        ds = BucketedDataset(paths, formulas[:3], vocab, batch_size=4)
    assert [i for i, _ in ds.skipped] == [1, 2] and "blank.png: blank image" in ds.skipped[0][1]
    (x, decoder_inputs), _ = ds[0]
    assert x.shape[0] == 1 and vocab.decode(decoder_inputs[0]) == vocab.decode(
        vocab.encode(formulas[0])
    )
    with pytest.raises(ImageError, match="blank.png"):
        BucketedDataset(paths, formulas[:3], vocab, skip_bad_images=False)


def test_batch_images_pads_with_white() -> None:
    batch = batch_images([np.zeros((48, 32, 1)), np.zeros((48, 96)), np.zeros((48, 64, 1))])
    assert batch.shape == (3, 48, 96, 1) and batch.dtype == np.float32
    assert (batch[0, :, 32:] == 1.0).all() and (batch[0, :, :32] == 0.0).all()
    assert (batch[1] == 0.0).all()
    with pytest.raises(ValueError, match="same height"):
        batch_images([np.zeros((48, 32, 1)), np.zeros((32, 32, 1))])
    with pytest.raises(ValueError, match="no images"):
        batch_images([])


def test_fits_a_keras_model_with_varying_shapes(data) -> None:
    images, formulas, vocab = data
    ds = BucketedDataset(images[:48], formulas[:48], vocab, batch_size=16, workers=2)
    assert ds.workers == 2
    image_in = keras.Input((INPUT_HEIGHT, None, 1))
    tokens_in = keras.Input((None,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling2D()(image_in)
    embedded = keras.layers.Embedding(len(vocab), 8)(tokens_in)
    context = keras.ops.expand_dims(keras.layers.Dense(8)(pooled), 1)
    logits = keras.layers.Dense(len(vocab))(embedded + context)
    model = keras.Model([image_in, tokens_in], logits)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert ds.epoch >= 1
