"""Inference speed: greedy one image, greedy batch throughput, beam 5 one image, and the cold
start of ``img2latex predict`` (whole process).

    python benchmarks/inference_speed.py [--checkpoint DIR] [--n 30] [--quick]

Without a checkpoint (none shipped yet), a randomly initialised default model is timed with its
output length fixed to ``--tokens`` by decoding until ``max_len``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, median_ms, sample_data, table

from img2latex_lib.checkpoints import default_checkpoint, save_checkpoint
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.model import Config, build_model
from img2latex_lib.tokenizer import Vocab


def _checkpoint(path: Path | None, tokens: int, vocab_formulas: list[str]) -> tuple[Path, str]:
    if path:
        return path, str(path)
    try:
        return default_checkpoint(), "shipped checkpoint"
    except ValueError:
        vocab = Vocab.build(vocab_formulas)
        model = build_model(Config(vocab_size=len(vocab), max_len=tokens), verbose=False)
        folder = Path(tempfile.mkdtemp(prefix="img2latex-bench-")) / "random"
        return save_checkpoint(folder, model, vocab), f"random default model, {tokens} tokens"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--n", type=int, default=30, help="images per measurement")
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 3 if args.quick else args.n
    images, formulas, source = sample_data(max(n, 64))
    checkpoint, which = _checkpoint(args.checkpoint, args.tokens, formulas)
    producer = LatexProducer(checkpoint)

    greedy_ms = median_ms(lambda image: producer.predict(image), images[:n])
    beam_ms = median_ms(lambda image: producer.predict(image, beam_size=5),
                         images[: max(3, n // 3)])
    batch = images[:64]
    producer.predict(batch, batch_size=32)
    start = time.perf_counter()
    producer.predict(batch, batch_size=32)
    per_second = len(batch) / (time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "img2latex_lib.cli", "predict", images[0],
                    "--checkpoint", str(checkpoint)], check=True, capture_output=True)
    cold = time.perf_counter() - start

    print(f"{machine()}\nmodel: {which}; data: {source}\n")
    print(table(["measurement", "result", "target"], [
        ["greedy, one image, median (ms)", f"{greedy_ms:.0f}", "≤ 100"],
        ["greedy, batches of 32 (images/s)", f"{per_second:.0f}", "≥ 30"],
        ["beam 5, one image, median (ms)", f"{beam_ms:.0f}", "≤ 500"],
        ["`img2latex predict` cold start, one image (s)", f"{cold:.1f}", "≤ 8"],
    ]))


if __name__ == "__main__":
    main()
