"""Accuracy on the development test set (im2latex-100k val ids 7475-8474), greedy and beam search,
optionally next to a peer's predictions on the same ids (see ``benchmarks/peer.py``).

    python benchmarks/accuracy.py [--checkpoint DIR] [--n 1000] [--beams 1 5]
                                  [--rerank [TOLERANCE ...]] [--companion CHECKPOINT]
                                  [--calibration]
                                  [--peer PEER_TSV ...] [--out DIR] [--name NAME] [--quick]

Writes the predictions of each decoding to ``<out>/<name>-greedy.tsv`` / ``<name>-beam<k>.tsv``
(``id, reference, prediction``). References and predictions are normalised with
``tokenizer.normalize`` before scoring; a second table gives the un-normalised exact match.
``--beams`` with no sizes decodes nothing and only scores the ``--peer`` files (earlier
predictions too, e.g. after a change to the renderer). Every system that covers all the ids is
also scored on the ids of each one that covers only some (a peer run on a sample).
``--rerank`` adds, for each beam size above 1, the same n-best lists render-checked
(``rerank.RenderReranker``), at each tolerance given (default ``rerank.DEFAULT_TOLERANCE``);
s/image then includes the rendering; ``--companion`` adds a second model's beam to each list
before the check (``rerank.pooled``). ``--calibration`` scores the calibration slice (val ids
6975-7474, never trained on) instead of the development test set: settings are chosen there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import machine
from _devtest import (
    OUT_DIR,
    calibration_slice,
    checkpoint_or_exit,
    dev_test,
    read_predictions,
    write_tsv,
)

from img2latex_lib.datasets import Sample
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.metrics import bleu4, evaluate, exact_match, format_table
from img2latex_lib.render import LatexRenderer
from img2latex_lib.rerank import DEFAULT_TOLERANCE, RenderReranker, pooled, trusted_choices
from img2latex_lib.tokenizer import normalize

COLUMNS = {
    "bleu4": "BLEU-4",
    "edit_score": "edit score",
    "exact_match": "exact match",
    "token_accuracy": "token accuracy",
    "image_match": "image match",
    "compile_rate": "compiles",
    "ref_render_failures": "refs not compiling",
}


def score(samples: list[Sample], predictions: list[str], renderer: LatexRenderer) -> dict:
    """Normalised metrics of one system, with image match and compile share from ``renderer``."""
    references = [normalize(s.formula) for s in samples]
    hypotheses = [normalize(p) for p in predictions]
    figures = evaluate(references, hypotheses, renderer)
    return {"n": len(samples)} | {COLUMNS[key]: value for key, value in figures.items()}


def raw_score(samples: list[Sample], predictions: list[str]) -> dict:
    """Exact match and BLEU-4 on the token sequences as written (tokenized, not normalised)."""
    references = [s.formula for s in samples]
    return {"n": len(samples), "exact match (raw)": exact_match(references, predictions),
            "BLEU-4 (raw)": bleu4(references, predictions)}


def decode(producer: LatexProducer, samples: list[Sample], beam: int,
           batch_size: int) -> tuple[list[list[str]], float]:
    """Each sample's candidates, best-scored first (greedy: one), and the wall time per image
    (preprocessing included)."""
    images = [s.image for s in samples]
    producer.predict(images[:1], beam_size=beam)  # trace the compiled functions first
    start = time.perf_counter()
    if beam == 1:
        candidates = [[p] for p in producer.predict(images, batch_size=batch_size)]
    else:
        candidates = [[latex for latex, _ in n]
                      for n in producer.nbest_lists(images, beam, batch_size)]
    return candidates, (time.perf_counter() - start) / len(images)


def reranked(samples: list[Sample], candidates: list[list[str]],
             tolerances: list[float]) -> tuple[dict[float, list[str]], float]:
    """The render-checked choice at each tolerance, and the seconds per image it adds."""
    start = time.perf_counter()
    reranker = RenderReranker()
    distances = reranker.distances([s.image for s in samples], candidates)
    seconds = (time.perf_counter() - start) / len(samples)
    return {t: trusted_choices(candidates, distances, reranker.matched_styles, t)
            for t in tolerances}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=1000, help="first n ids of the dev test set")
    parser.add_argument("--beams", type=int, nargs="*", default=[1, 5],
                        help="beam sizes to decode with (1 = greedy; none: only score --peer)")
    parser.add_argument("--peer", type=Path, nargs="*", default=[],
                        help="prediction files of other systems (id, reference, prediction)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for prediction files")
    parser.add_argument("--name", default=None, help="file/table name (default: checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="20 images only")
    parser.add_argument("--rerank", type=float, nargs="*", default=None, metavar="TOLERANCE",
                        help="also score the beams render-checked (default tolerance "
                        f"{DEFAULT_TOLERANCE})")
    parser.add_argument("--companion", type=Path, default=None, metavar="CHECKPOINT",
                        help="with --rerank: also check this checkpoint's beam candidates")
    parser.add_argument("--calibration", action="store_true",
                        help="score val ids 6975-7474 (the calibration slice) instead")
    parser.add_argument("--unbalanced", action="store_true",
                        help="decode without the balance constraint (braces, \\left/\\right, "
                        "environments)")
    args = parser.parse_args()

    samples = (calibration_slice if args.calibration else dev_test)(20 if args.quick else args.n)
    tolerances = [] if args.rerank is None else (args.rerank or [DEFAULT_TOLERANCE])
    peers = {path: read_predictions(path) for path in args.peer}
    if not args.beams and not peers:
        sys.exit("nothing to score: give --beams, --peer or both")
    checkpoint = checkpoint_or_exit(args.checkpoint)
    name = args.name or checkpoint.name
    if args.companion and not tolerances:
        sys.exit("--companion adds candidates to the render check: give --rerank too")
    if args.beams:
        producer = LatexProducer(checkpoint, balanced=not args.unbalanced)
        companion = args.companion and LatexProducer(args.companion,
                                                     balanced=not args.unbalanced)
    systems: dict[str, tuple[list[Sample], list[str]]] = {}
    seconds: dict[str, float] = {}
    for beam in args.beams:
        label = f"{name} " + ("greedy" if beam == 1 else f"beam {beam}")
        candidates, seconds[label] = decode(producer, samples, beam, args.batch_size)
        decodings = {label: (f"{name}-{'greedy' if beam == 1 else f'beam{beam}'}",
                             [c[0] for c in candidates])}
        checks = {"": (candidates, 0.0)} if beam > 1 and tolerances else {}
        if checks and companion:
            more, more_seconds = decode(companion, samples, beam, args.batch_size)
            checks[f" and {args.companion.name}'s"] = (
                [pooled(a, b) for a, b in zip(candidates, more, strict=True)], more_seconds)
        for with_companion, (lists, more_seconds) in checks.items():
            choices, extra = reranked(samples, lists, tolerances)
            for tolerance, predictions in choices.items():
                checked = f"{label}{with_companion} + render check ({tolerance:g})"
                seconds[checked] = seconds[label] + more_seconds + extra
                stem = f"{name}-beam{beam}" + (f"-{args.companion.name}" if with_companion
                                               else "") + f"-rerank{tolerance:g}"
                decodings[checked] = (stem, predictions)
        for label, (stem, predictions) in decodings.items():
            path = args.out / (stem + ("-calibration" if args.calibration else "") + ".tsv")
            write_tsv(path, samples, predictions)
            systems[label] = (samples, predictions)
            print(f"{label}: {seconds[label]:.3f} s/image; predictions in {path}")

    for path, by_id in peers.items():
        shared = [s for s in samples if s.formula_id in by_id]
        if not shared:
            sys.exit(f"{path}: none of its ids are among the {len(samples)} evaluated")
        systems[path.stem] = (shared, [by_id[s.formula_id] for s in shared])
    complete = {label: pair for label, pair in systems.items() if len(pair[0]) == len(samples)}
    for partial, (subset, _) in list(systems.items()):
        if len(subset) < len(samples):  # the others on this system's ids too
            keep = {s.formula_id for s in subset}
            for label, (own, predictions) in complete.items():
                pairs = [(s, p) for s, p in zip(own, predictions, strict=True)
                         if s.formula_id in keep]
                systems[f"{label} (ids of {partial})"] = (
                    [s for s, _ in pairs], [p for _, p in pairs])

    renderer = LatexRenderer("amsmath")
    rows = {label: score(own, predictions, renderer) | (
        {"s/image": seconds[label]} if label in seconds else {})
        for label, (own, predictions) in systems.items()}
    print(f"\n{machine()}; load average {os.getloadavg()[0]:.1f} at the end "
          "(shared machine: timings include that load)")
    print(f"checkpoint: {checkpoint.name}; decoding in batches of {args.batch_size} "
          "(s/image: wall time with preprocessing; the first trace excluded)\n")
    print(format_table(rows))
    print("\nScored after tokenizer.normalize on references and predictions (equivalent spellings "
          "such as x^2 / x^{2} or \\le / \\leq count as equal).\nImage match and compiles: "
          "pdflatex with the amsmath template (article 10pt + amsmath, amssymb), strict: any "
          "LaTeX error counts as not compiling (normalised formulas spell operators with "
          "\\operatorname, an amsmath command). Image match leaves out the references that do "
          "not compile there ('refs not compiling') and counts a prediction that does not "
          "compile as a mismatch.\n")
    print(format_table({label: raw_score(own, predictions)
                        for label, (own, predictions) in systems.items()}))
    print("\nRaw: references as in formulas.norm.lst and predictions as produced, compared token "
          "by token without normalisation.")


if __name__ == "__main__":
    main()
