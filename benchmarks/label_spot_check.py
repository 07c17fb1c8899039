"""A spot check of the committed labels: accepted labels drawn at random, each training image next
to the im2latex-style render of its label, with the verifier's distance and margin as recorded.

    python benchmarks/label_spot_check.py [--k 12] [--seed 0] [--figure docs/labels-spot-check.png]

Reads ``data/labels/`` and the unpacked training images (``data/cache/train_unlabeled``, where
``benchmarks/label_all.py`` unpacks the shards); prints one row per label (image, distance and
margin as recorded, the verifier's distance measured again now, formula) and draws the pairs,
to be judged by eye.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from img2latex_lib.labels import accepted_rows  # noqa: E402
from img2latex_lib.plots import side_by_side  # noqa: E402
from img2latex_lib.preprocess import crop_to_ink  # noqa: E402
from img2latex_lib.render import LatexRenderer  # noqa: E402
from img2latex_lib.selftrain import Verifier  # noqa: E402

FORMULA_SHOWN = 70


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, default=REPO / "data" / "labels")
    parser.add_argument("--images", type=Path,
                        default=REPO / "data" / "cache" / "train_unlabeled" / "images")
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args(argv)

    accepted = list(accepted_rows(args.labels).values())
    if not accepted:
        raise SystemExit(f"{args.labels}: no accepted labels")
    drawn = random.Random(args.seed).sample(accepted, min(args.k, len(accepted)))
    missing = [row["image"] for row in drawn if not (args.images / row["image"]).exists()]
    if missing:
        raise SystemExit(f"{args.images}: {missing[0]} is not there: unpack its shard "
                         "(benchmarks/label_all.py does)")
    from PIL import Image

    images = [Image.open(args.images / row["image"]).convert("L") for row in drawn]
    formulas = [row["formula"] for row in drawn]
    renders = [result.image for result in LatexRenderer().render_batch(formulas)]
    verdicts = Verifier().verify_batch(images, [[formula] for formula in formulas])
    print(f"{len(drawn)} of {len(accepted)} accepted labels, drawn with seed {args.seed}")
    print("| image | distance (recorded) | margin | distance now | formula |")
    print("|---|---|---|---|---|")
    for row, verdict in zip(drawn, verdicts, strict=True):
        now = verdict.distance
        formula = row["formula"]
        shown = formula if len(formula) <= FORMULA_SHOWN else formula[:FORMULA_SHOWN] + " …"
        print(f"| {row['image']} | {row['distance']} | {row['margin']} | {now:.3f} | "
              f"`{shown}` |")
    if args.figure:
        blank = Image.new("L", (8, 8), 255)
        figure = side_by_side([crop_to_ink(image) for image in images],
                              [r if r is not None else blank for r in renders],
                              titles=("training image", "its label, rendered"))
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.figure, dpi=110)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
