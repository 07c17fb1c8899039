"""Robustness to the input's look: the same dev-test formulas (ids 7475 onwards) as the real
im2latex-100k images, re-rendered at 0.5x, 1x, 2x and 3x their size, and as a JPEG screenshot.

    python benchmarks/robustness.py [--checkpoint DIR] [--n 100] [--rerank] [--quick]

Sizes are re-rendered with ``LatexRenderer`` (im2latex template) at 200 dpi x factor, downsampled
by 2 like the real images, which is what a screenshot at another zoom shows (not a resized
bitmap). The screenshot is an antialiased render at 1.5x saved as JPEG quality 75 and read back.
Greedy decoding; with ``--rerank`` also beam 5 and beam 5 checked by rendering
(:class:`rerank.RenderReranker`, which rescales an image at another zoom to each candidate's
render). Exact match and BLEU-4 after ``tokenizer.normalize``. A formula that fails to
render in any condition is left out of all, so every row scores the same formulas.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path

from _common import machine, table
from _devtest import checkpoint_or_exit, dev_test
from PIL import Image

from img2latex_lib.decoding import LatexProducer
from img2latex_lib.metrics import bleu4, exact_match
from img2latex_lib.render import IM2LATEX_DPI, LatexRenderer
from img2latex_lib.rerank import RenderReranker
from img2latex_lib.tokenizer import normalize

SCALES = (0.5, 1.0, 2.0, 3.0)
SCREENSHOT_SCALE, JPEG_QUALITY = 1.5, 75


def jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> Image.Image:
    """The image after a round trip through a JPEG file of the given quality."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def render(formulas: list[str], scale: float, raster: str = "coverage") -> list[Image.Image | None]:
    """Each formula rendered in the im2latex style at ``scale`` times the real images' size."""
    renderer = LatexRenderer(dpi=round(IM2LATEX_DPI * scale), raster=raster)
    return [result.image for result in renderer.render_batch(formulas)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=100, help="first n ids of the dev test set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rerank", action="store_true",
                        help="also score beam 5, and beam 5 checked by rendering")
    parser.add_argument("--quick", action="store_true", help="10 formulas only")
    args = parser.parse_args()

    samples = dev_test(10 if args.quick else args.n)
    formulas = [s.formula for s in samples]
    conditions: dict[str, list] = {"real im2latex-100k image": [Image.open(s.image)
                                                                for s in samples]}
    for scale in SCALES:
        dpi = round(IM2LATEX_DPI * scale)
        conditions[f"re-rendered {scale:g}x ({dpi} dpi)"] = render(formulas, scale)
    shots = render(formulas, SCREENSHOT_SCALE, raster="antialias")
    conditions[f"screenshot: antialiased {SCREENSHOT_SCALE:g}x, JPEG q{JPEG_QUALITY}"] = [
        None if image is None else jpeg(image) for image in shots]
    keep = [i for i in range(len(samples))
            if all(images[i] is not None for images in conditions.values())]
    if not keep:
        sys.exit("no formula rendered in every condition; is pdflatex working?")

    producer = LatexProducer(checkpoint_or_exit(args.checkpoint))
    references = [normalize(formulas[i]) for i in keep]
    reranker = RenderReranker() if args.rerank else None
    rows = []
    for name, images in conditions.items():
        chosen = [images[i] for i in keep]
        decodings = {"greedy": producer.predict(chosen, batch_size=args.batch_size)}
        if reranker:
            lists = [[latex for latex, _ in n]
                     for n in producer.nbest_lists(chosen, 5, args.batch_size)]
            decodings["beam 5"] = [n[0] if n else "" for n in lists]
            decodings["beam 5 + render check"] = reranker.choose(chosen, lists)
        height = statistics.median(image.height for image in chosen)
        row = [name, f"{height:g}"]
        for predictions in decodings.values():
            predictions = [normalize(p) for p in predictions]
            row += [f"{exact_match(references, predictions):.3f}",
                    f"{bleu4(references, predictions):.3f}"]
        rows.append(row)
    print(f"{machine()}\ncheckpoint: {producer.checkpoint_dir.name}; {len(keep)} of "
          f"{len(samples)} formulas rendered in every condition\n")
    print(table(["input", "median height (px)",
                 *(f"{decoding} {figure}" for decoding in decodings
                   for figure in ("exact match", "BLEU-4"))], rows))
    print("\nScored after tokenizer.normalize on references and predictions. Heights are of the "
          "image as given to the model: the real images carry white padding to a bucket size, "
          "the re-rendered ones are cropped to the ink with a 4 px margin.")


if __name__ == "__main__":
    main()
