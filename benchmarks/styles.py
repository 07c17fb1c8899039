"""The style benchmark: the same development-test formulas (val ids 7475 onwards; evaluation
only) typeset in every style, and how well the model reads each.

    python benchmarks/styles.py [--checkpoint DIR] [--n 100] [--styles a,b,...] [--best rerank]
                                [--rerank-styles a,b,...] [--figure docs/styles.png] [--quick]

Each style renders the formulas with its own `Renderer` (``img2latex_lib.styles``); a formula
that fails in any style is left out of all, so every row scores the same formulas. The first row
is the real im2latex-100k images. Per style: greedy decoding and the best decoding (``--best``:
``beam`` = beam 5, ``rerank`` = beam 5, then its candidates checked by rendering them in the
im2latex style and in the styles of ``--rerank-styles`` (default ``rerank.PROBE_STYLES``), the
style that matches each image best; ``none``), each scored with BLEU-4
and exact match after ``tokenizer.normalize`` and with image match (prediction and reference
rendered in the im2latex style and compared, as in the im2latex literature). Predictions go to
``test-output/styles/<style>.tsv``. ``--figure`` draws one formula in every style with the
greedy prediction under each.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from _common import machine, table
from _devtest import OUT_DIR, checkpoint_or_exit, dev_test, write_tsv
from PIL import Image

from img2latex_lib.decoding import LatexProducer
from img2latex_lib.formats import compact
from img2latex_lib.metrics import evaluate
from img2latex_lib.render import LatexRenderer
from img2latex_lib.rerank import PROBE_STYLES, RenderReranker
from img2latex_lib.styles import available_styles, missing, style_renderer
from img2latex_lib.tokenizer import normalize

#: The styles of the headline table: the faces people screenshot, and how they screenshot them.
DEFAULT_STYLES = ("im2latex", "pdf-viewer", "cm-12pt", "lmodern", "times", "palatino",
                  "termes-lua", "pagella-lua", "stix2-lua", "katex", "katex-2x", "mathjax",
                  "mathtext-stix", "times+screen-96dpi+jpeg-70", "dark", "slides")
REAL = "real im2latex-100k images"


def rendered(styles: list[str], formulas: list[str]) -> tuple[dict[str, list], dict[str, float]]:
    """Each style's images of the formulas (None where one failed) and its seconds a formula."""
    images, cost = {}, {}
    for name in styles:
        start = time.perf_counter()
        images[name] = [r.image for r in style_renderer(name).render_batch(formulas)]
        cost[name] = (time.perf_counter() - start) / len(formulas)
        failed = sum(image is None for image in images[name])
        print(f"{name}: rendered in {cost[name]:.3f} s a formula"
              + (f", {failed} failed" if failed else ""), file=sys.stderr)
    return images, cost


def decodings(producer: LatexProducer, images: list, best: str,
              rerankers: dict[str, RenderReranker], batch_size: int) -> dict[str, list[str]]:
    """Greedy and (unless ``best`` is none) beam 5, then each reranker's choice among its
    candidates."""
    found = {"greedy": producer.predict(images, batch_size=batch_size)}
    if best != "none":
        lists = [[latex for latex, _ in n] for n in producer.nbest_lists(images, 5, batch_size)]
        found["beam 5"] = [n[0] if n else "" for n in lists]
        for label, reranker in rerankers.items():
            found[label] = reranker.choose(images, lists)
            if len(reranker.styles) > 1:
                matched = Counter(reranker.matched_styles)
                print(f"  {label}: compared in " + ", ".join(
                    f"{name or 'no style (beam first)'} {n}" for name, n in matched.most_common()),
                    file=sys.stderr)
    return found


def figure(path: Path, conditions: dict[str, list], predictions: dict[str, list[str]],
           reference: str, index: int) -> None:
    """One formula in every style, two columns, each image with its greedy prediction (compact
    LaTeX, as `img2latex predict` prints it) and whether it is an exact match."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(conditions)
    rows = (len(names) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(11, 1.45 * rows + 0.6), squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for axis, name in zip(axes.T.flat, names, strict=False):
        text = predictions[name][index]
        mark = "exact" if normalize(text) == normalize(reference) else "wrong"
        axis.imshow(conditions[name][index].convert("RGB"), aspect="equal")
        axis.set_title(f"{name}: {mark}", fontsize=8, loc="left", weight="bold")
        axis.text(0, -0.04, textwrap.shorten(compact(text), 80, placeholder=" ..."),
                  transform=axis.transAxes, fontsize=6.5, family="monospace", va="top")
    fig.suptitle("reference: " + textwrap.shorten(compact(reference), 110, placeholder=" ..."),
                 fontsize=8.5, family="monospace")
    fig.tight_layout(h_pad=1.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"figure: {path}", file=sys.stderr)


def figure_index(references: list[str], wanted: int | None) -> int:
    """`wanted`, or the first formula of 15-40 tokens: long enough to show a face, short enough
    to read in the figure."""
    if wanted is not None:
        return min(wanted, len(references) - 1)
    return next((i for i, r in enumerate(references) if 15 <= len(r.split()) <= 40), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=100, help="first n ids of the dev test set")
    parser.add_argument("--styles", default=",".join(DEFAULT_STYLES),
                        help="comma-separated style names (default: the headline set)")
    parser.add_argument("--best", choices=["none", "beam", "rerank"], default="rerank")
    parser.add_argument("--rerank-styles", default=",".join(PROBE_STYLES),
                        help="with --best rerank: the styles of the second render check")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--figure", type=Path, default=None, help="write the style figure here")
    parser.add_argument("--figure-index", type=int, default=None,
                        help="which of the kept formulas the figure shows (default: the first "
                             "of 15-40 tokens)")
    parser.add_argument("--quick", action="store_true", help="8 formulas, greedy only")
    args = parser.parse_args()

    wanted = [name.strip() for name in args.styles.split(",") if name.strip()]
    here = set(available_styles())
    styles = []
    for name in wanted:
        reason = missing(name)
        if reason is None or name in here:
            styles.append(name)
        else:
            print(f"skipped style {name}: {reason}", file=sys.stderr)
    samples = dev_test(8 if args.quick else args.n)
    formulas = [s.formula for s in samples]
    images, cost = rendered(styles, formulas)
    conditions = {REAL: [Image.open(s.image) for s in samples], **images}
    keep = [i for i in range(len(samples)) if all(c[i] is not None for c in conditions.values())]
    if not keep:
        sys.exit("no formula rendered in every style")

    producer = LatexProducer(checkpoint_or_exit(args.checkpoint))
    best = "none" if args.quick else args.best
    rerankers = {} if best != "rerank" else {
        "render check": RenderReranker(),
        "render check in styles": RenderReranker(styles=args.rerank_styles.split(","))}
    judge = LatexRenderer()
    references = [normalize(formulas[i]) for i in keep]
    rows, greedy_of = [], {}
    for name, all_images in conditions.items():
        chosen = [all_images[i] for i in keep]
        start = time.perf_counter()
        found = decodings(producer, chosen, best, rerankers, args.batch_size)
        seconds = (time.perf_counter() - start) / len(chosen)
        greedy_of[name] = found["greedy"]
        write_tsv(OUT_DIR.parent / "styles" / f"{name.replace('+', '_')}.tsv",
                  [samples[i] for i in keep], found["greedy"])
        row = [name, f"{cost.get(name, 0):.3f}" if name in cost else "-"]
        for predictions in found.values():
            figures = evaluate(references, [normalize(p) for p in predictions], renderer=judge)
            row += [f"{figures['bleu4']:.3f}", f"{figures['exact_match']:.3f}",
                    f"{figures['image_match']:.3f}"]
        rows.append(row + [f"{seconds:.2f}"])
        print(f"{name}: {' / '.join(row[2:])}", file=sys.stderr)
    print(f"{machine()}\ncheckpoint: {producer.checkpoint_dir.name}; {len(keep)} of "
          f"{len(samples)} dev-test formulas rendered in every style\n")
    print(table(["style", "render s/formula",
                 *(f"{decoding} {metric}" for decoding in found
                   for metric in ("BLEU-4", "exact", "image match")), "decode s/image"], rows))
    print("\nExact match and BLEU-4 after tokenizer.normalize; image match renders prediction and "
          "reference in the im2latex style and compares the bitmaps.")
    if args.figure:
        index = figure_index(references, args.figure_index)
        figure(args.figure, {name: [c[i] for i in keep] for name, c in conditions.items()},
               greedy_of, references[index], index)


if __name__ == "__main__":
    main()
