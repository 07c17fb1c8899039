"""Training throughput (samples/s) of the default model with keras ``fit`` on val-like images.

    python benchmarks/train_speed.py [--steps 30] [--batch_size 32] [--image_height H]
        [--cnn_widths 16 32 64 128 --cnn_pools 2 2 2 1] [--decoder_units U] [--quick]

Without the size flags it times the default ``Config``; with them, a variant (what a smaller
model would gain).
"""

from __future__ import annotations

import argparse
import time

import keras
from _common import machine, sample_data, table

from img2latex_lib.batching import BucketedDataset
from img2latex_lib.model import Config, build_model, masked_accuracy, masked_loss
from img2latex_lib.tokenizer import Vocab
from img2latex_lib.training import fit_input


class _StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def samples_per_second(config: Config, images: list[str], formulas: list[str], steps: int,
                       warmup: int = 5) -> float:
    """Measured over ``steps`` steps after ``warmup`` steps (tracing, first batches)."""
    vocab = Vocab.build(formulas)
    config.vocab_size = len(vocab)
    data = BucketedDataset(images, formulas, vocab, batch_size=config.batch_size,
                           height=config.image_height, seed=1)
    model = build_model(config, verbose=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=masked_loss(),
                  metrics=[masked_accuracy])
    timer = _StepTimes()
    model.fit(fit_input(data, config.image_height), epochs=1,
              steps_per_epoch=min(steps + warmup, len(data)), callbacks=[timer], verbose=0)
    measured = len(timer.times) - warmup
    return measured * config.batch_size / (timer.times[-1] - timer.times[warmup - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_height", type=int, default=None, help="default: Config's")
    parser.add_argument("--cnn_widths", type=int, nargs="+", default=None)
    parser.add_argument("--cnn_pools", type=int, nargs="+", default=None)
    parser.add_argument("--decoder_units", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="3 steps, a smoke test")
    args = parser.parse_args()
    steps = 3 if args.quick else args.steps
    images, formulas, source = sample_data((steps + 6) * args.batch_size)
    sizes = {name: tuple(value) if isinstance(value, list) else value
             for name in ("image_height", "cnn_widths", "cnn_pools", "decoder_units")
             if (value := getattr(args, name)) is not None}
    config = Config(batch_size=args.batch_size, **sizes)
    speed = samples_per_second(config, images, formulas, steps)
    print(f"{machine()}\ndata: {source}\n")
    print(table(["model", "image height", "batch", "steps", "samples/s"],
                [[f"CNN {config.cnn_widths}, GRU {config.decoder_units}",
                  config.image_height, args.batch_size, steps, f"{speed:.0f}"]]))


if __name__ == "__main__":
    main()
