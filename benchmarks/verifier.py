r"""Calibrate the self-training verifier on real labelled images, then measure it on the
development test set, and time pseudo-labelling end to end.

    python benchmarks/verifier.py [--checkpoint DIR] [--beam 5] [--n 500] [--quick]

1. Calibration slice, val ids 6975-7474 (the shipped model never trained on them): the model's
   n-best lists, each candidate's image distance to the real image, and for every (threshold,
   margin) pair the precision and recall of what the verifier would accept. The chosen pair is
   the one accepting the most images at a precision of at least --precision (0.98).
2. Development test set, ids 7475 onwards (the first --n): precision and recall of the chosen
   pair and of the library's defaults (``selftrain.DEFAULT_THRESHOLD`` / ``DEFAULT_MARGIN``).
An accepted label is correct when its tokens equal the normalized gold formula's, or when it
renders to the same image as the gold formula (an equivalent spelling): both rendered by
``LatexRenderer`` at 200 dpi (before the 2x downsampling), their ink agrees within 1 pixel
(``metrics.bitmaps_match(tolerance=1)``, which at 200 dpi told 147 of 148 one-letter changes
apart) — so ``\beta '`` for ``\beta ^ { \prime }`` or ``{ \frac { 1 } { 2 } }`` for
``\frac { 1 } { 2 }`` count as right. A stricter column asks for identical bitmaps at 100 dpi.
Throughput: images/s of decoding (beam), of rendering + comparing, and end to end.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine, table
from _devtest import CALIBRATION, FIRST_ID, calibration_slice, checkpoint_or_exit, dev_test

from img2latex_lib.compare import bitmaps_match, render_phases
from img2latex_lib.datasets import Sample
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.preprocess import load_image
from img2latex_lib.render import LatexRenderer
from img2latex_lib.selftrain import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Verifier
from img2latex_lib.tokenizer import normalize

THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.3, 1.6, 2.0)
MARGINS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8)


def judged(producer: LatexProducer, samples: list[Sample], beam: int) -> dict:
    """Best candidate, its distance and margin, and whether it is right, for each sample."""
    images = [load_image(s.image) for s in samples]
    start = time.perf_counter()
    nbest = producer.nbest_lists(images, beam)
    decoded = time.perf_counter()
    everything = Verifier(threshold=float("inf"), margin=0.0)
    verdicts = everything.verify_batch(images, [[c for c, _ in n] for n in nbest])
    verified = time.perf_counter()
    best = [v.formula or "" for v in verdicts]
    golds = [normalize(s.formula) for s in samples]
    exact = np.array([b.split() == g.split() for b, g in zip(best, golds, strict=True)])
    fine = LatexRenderer(template="im2latex", downsample=1).render_batch(best + golds)
    pairs = list(zip(fine[: len(best)], fine[len(best):], strict=True))
    within_1px = [a.image is not None and b.image is not None
                  and bitmaps_match(a.image, b.image, tolerance=1) for a, b in pairs]
    identical = [a.image is not None and b.image is not None
                 and np.array_equal(*(np.asarray(render_phases(x.image)[0]) for x in (a, b)))
                 for a, b in pairs]
    return {"distance": np.array([v.distance for v in verdicts]),
            "margin": np.array([v.margin for v in verdicts]),
            "correct": exact | np.array(within_1px), "strict": exact | np.array(identical),
            "exact": exact, "decode_s": decoded - start, "verify_s": verified - decoded}


def wilson_lower(p: float, n: int, z: float = 1.96) -> float:
    """Lower end of the 95 % Wilson score interval of a proportion ``p`` of ``n`` (0 when n is
    0)."""
    if n == 0:
        return 0.0
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


def precision_recall(result: dict, threshold: float, margin: float,
                     key: str = "correct") -> tuple[float, float, int]:
    accepted = (result["distance"] <= threshold) & (result["margin"] >= margin)
    n = int(accepted.sum())
    precision = float(result[key][accepted].mean()) if n else float("nan")
    return precision, n / len(accepted), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--n", type=int, default=500, help="dev-test images (and calibration)")
    parser.add_argument("--precision", type=float, default=0.98, help="wanted on calibration")
    parser.add_argument("--quick", action="store_true", help="20 images each, a smoke test")
    args = parser.parse_args()
    n = 20 if args.quick else args.n
    test_samples = dev_test(n)
    calibration = calibration_slice(n)
    producer = LatexProducer(checkpoint_or_exit(args.checkpoint))
    print(f"{machine()}\ncheckpoint: {producer.checkpoint_dir}, beam {args.beam}\n")

    cal = judged(producer, calibration, args.beam)
    print(f"calibration slice, val ids {CALIBRATION.start}-{CALIBRATION.stop - 1} "
          f"({len(calibration)} images): best candidate right for {cal['correct'].mean():.3f}"
          f" (token-exact {cal['exact'].mean():.3f})")
    rows, choice = [], None
    for threshold in THRESHOLDS:
        cells = []
        for margin in MARGINS:
            precision, recall, count = precision_recall(cal, threshold, margin)
            cells.append(f"{precision:.3f} / {recall:.3f}")
            ok = count >= 5 and precision >= args.precision
            if ok and (choice is None or recall > choice[2]):
                choice = (threshold, margin, recall)
        rows.append([threshold, *cells])
    print("\nprecision / recall (accepted share) by threshold (rows) and margin (columns):")
    print(table(["threshold", *[f"margin {m}" for m in MARGINS]], rows))

    test = judged(producer, test_samples, args.beam)
    settings = [("defaults", DEFAULT_THRESHOLD, DEFAULT_MARGIN)]
    if choice:
        settings.insert(0, ("calibrated", choice[0], choice[1]))
    else:
        print(f"\nno setting reached precision {args.precision} on the calibration slice")
    out = []
    for name, threshold, margin in settings:
        for label, result in (("calibration", cal), ("dev-test", test)):
            precision, recall, count = precision_recall(result, threshold, margin)
            strict, _, _ = precision_recall(result, threshold, margin, "strict")
            lower = wilson_lower(precision, count)
            out.append([name, threshold, margin, label, f"{precision:.3f}", f"{lower:.3f}",
                        f"{strict:.3f}", f"{recall:.3f}", count, len(result["correct"])])
    print(f"\ndev-test ids {FIRST_ID}-{FIRST_ID + n - 1}: best candidate right for "
          f"{test['correct'].mean():.3f} (token-exact {test['exact'].mean():.3f})")
    print(table(["setting", "threshold", "margin", "images", "precision",
                 "precision, 95 % lower bound", "precision (identical bitmaps)", "recall",
                 "accepted", "of"], out))

    images = len(calibration) + len(test_samples)
    decode = cal["decode_s"] + test["decode_s"]
    verify = cal["verify_s"] + test["verify_s"]
    print("\npseudo-labelling throughput (images/s):")
    print(table(["decoding (beam)", "rendering + comparing", "end to end"],
                [[f"{images / decode:.2f}", f"{images / verify:.2f}",
                  f"{images / (decode + verify):.2f}"]]))


if __name__ == "__main__":
    main()
