"""Label every unlabeled im2latex-100k training image with the shipped model, resumably, and keep
each decision in the committed label set ``data/labels/`` (``img2latex_lib.labels``).

    nice -n 19 python benchmarks/label_all.py [--shard 0 1 …] [--max_minutes M] [--repo DIR]
    python benchmarks/label_all.py --export-only   # fold the work folder into data/labels
    python benchmarks/label_all.py --quick         # a dry run on the first 4 images of a shard

Source shards (``--source``/images-NN.tgz) are unpacked as needed into the ignored
REPO/data/cache/train_unlabeled; their images are labelled in numeric order by
``selftrain.pseudo_label`` (beam 5, the default Verifier) into the ignored work folder
REPO/data/cache/label_work, and after every ``--chunk`` images the decisions are merged into
REPO/data/labels/images-NN.tsv (atomic writes; rows already there are never dropped). Killed at
any moment, the job loses at most the chunk in progress; rerun on any machine that has the
committed data/labels and the shards, it skips every image its run (same weights, beam and
verifier settings) has decided. ``--quick`` writes its labels and work folder under
REPO/runs/label_all_quick/ instead, so a dry run never touches the committed set.

The library is imported from the folder above this script, not from the installed package, so
a frozen copy of the code can label into a repository that is being edited (``--repo``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from img2latex_lib.selftrain import LabelSummary

CODE = Path(__file__).resolve().parents[1]
QUICK_IMAGES = 4


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=CODE,
                        help="repository root that receives data/labels and data/cache")
    parser.add_argument("--source", type=Path, default=None, help="folder of images-NN.tgz "
                        "(default REPO/../shared/data/im2latex100k_train_unlabeled)")
    parser.add_argument("--shard", nargs="+", type=int, default=None,
                        help="source shard numbers, in this order (default: all found)")
    parser.add_argument("--checkpoint", type=Path, default=CODE / "checkpoints" / "img2latex-base")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=None,
                        help="verifier threshold (default selftrain.DEFAULT_THRESHOLD)")
    parser.add_argument("--margin", type=float, default=None,
                        help="verifier margin (default selftrain.DEFAULT_MARGIN)")
    parser.add_argument("--round", type=int, default=5,
                        help="self-training round recorded with each row (rounds 1-4 are in "
                             "docs/self-training.md)")
    parser.add_argument("--chunk", type=int, default=100, help="images between two exports")
    parser.add_argument("--batch_size", type=int, default=25,
                        help="images decoded and verified together (decisions saved after each)")
    parser.add_argument("--max_minutes", type=float, default=None,
                        help="start no chunk after this many minutes")
    parser.add_argument("--labels", type=Path, default=None, help="default REPO/data/labels")
    parser.add_argument("--work", type=Path, default=None,
                        help="default REPO/data/cache/label_work")
    parser.add_argument("--cache", type=Path, default=None,
                        help="where shards are unpacked (default REPO/data/cache/train_unlabeled)")
    parser.add_argument("--export-only", action="store_true",
                        help="only fold the work folder's decisions into the label set")
    parser.add_argument("--quick", action="store_true",
                        help=f"dry run: the first {QUICK_IMAGES} images of the first shard, "
                             "labels and work folder under REPO/runs/label_all_quick/")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    scratch = repo / "runs" / "label_all_quick" if args.quick else None
    args.source = args.source or repo.parent / "shared" / "data" / "im2latex100k_train_unlabeled"
    args.labels = args.labels or (scratch or repo / "data") / "labels"
    args.work = args.work or (scratch / "work" if scratch else repo / "data/cache/label_work")
    args.cache = args.cache or repo / "data" / "cache" / "train_unlabeled"
    return args


def _numeric(path: Path) -> tuple[int, str]:
    return (int(path.stem) if path.stem.isdigit() else -1, path.name)


def shard_images(archive: Path, cache: Path) -> list[Path]:
    """The images of one source shard, as they lie once it is unpacked into ``cache``
    (``cache/images/N.png``), in numeric order."""
    if not archive.exists():
        raise SystemExit(f"{archive}: no such shard (see --source)")
    listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True,
                             check=True).stdout.split()
    return sorted((cache / name for name in listing if name.endswith(".png")), key=_numeric)


def unpack(archive: Path, cache: Path) -> None:
    """Unpack a source shard into ``cache`` unless done before (a marker file says so)."""
    marker = cache / f".{archive.name}.unpacked"
    if not marker.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(cache)], check=True)
        marker.touch()


def main(argv: list[str] | None = None) -> int:
    """Run the job; 0 when every selected image has been decided, 1 when time ran out."""
    args = _arguments(argv)
    sys.path.insert(0, str(CODE))
    import img2latex_lib
    from img2latex_lib.labels import (
        Run,
        decided_images,
        export_work,
        read_runs,
        shard_file,
        weights_hash,
        work_folder,
    )
    from img2latex_lib.selftrain import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Verifier, pseudo_label

    pending = export_work(args.work, args.labels)  # what a killed run left in the work folder
    if pending or args.export_only:
        print(f"exported {sum(pending.values())} new rows into {args.labels}"
              + "".join(f", {shard}: {n}" for shard, n in sorted(pending.items())), flush=True)
    if args.export_only:
        return 0
    verifier = Verifier(DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
                        DEFAULT_MARGIN if args.margin is None else args.margin)
    run = Run(args.checkpoint.name, weights_hash(args.checkpoint), args.beam,
              verifier.threshold, verifier.margin, date.today().isoformat())
    run_id = next((k for k, known in read_runs(args.labels).items() if known.key == run.key), 0)
    print(f"run {run_id or '(new)'}: {run}; code from {Path(img2latex_lib.__file__).parent}",
          flush=True)
    shards = ([f"images-{k:02d}" for k in args.shard] if args.shard is not None
              else sorted(p.name.removesuffix(".tgz") for p in args.source.glob("images-*.tgz")))
    if not shards:
        raise SystemExit(f"{args.source}: no images-NN.tgz shards there (see --source)")
    if args.quick:
        shards = shards[:1]
    producer = None
    start = time.monotonic()
    for shard in shards:
        archive = args.source / f"{shard}.tgz"
        images = shard_images(archive, args.cache)
        images = images[:QUICK_IMAGES] if args.quick else images
        decided = decided_images(args.labels, shard, run_id) if run_id else set()
        todo = [p for p in images if p.name not in decided]
        print(f"{shard}: {len(images)} images, {len(images) - len(todo)} decided before, "
              f"{len(todo)} to label", flush=True)
        if not todo:
            continue
        unpack(archive, args.cache)
        if producer is None:
            from img2latex_lib.decoding import LatexProducer

            producer = LatexProducer(args.checkpoint)
        folder = work_folder(args.work, run, shard)
        for begin in range(0, len(todo), args.chunk):
            if args.max_minutes is not None and time.monotonic() - start > 60 * args.max_minutes:
                print(f"stopped after {args.max_minutes} minutes; rerun to go on", flush=True)
                return 1
            began = time.monotonic()
            summary = pseudo_label(producer, todo[begin : begin + args.chunk], folder, verifier,
                                   round_index=args.round, beam_size=args.beam,
                                   batch_size=args.batch_size, progress=False)
            for failure in summary.failures:
                print(f"  {failure}", flush=True)
            export_work(args.work, args.labels)
            run_id = run_id or next(k for k, known in read_runs(args.labels).items()
                                    if known.key == run.key)
            _report(shard, shard_file(args.labels, shard), run_id, len(images),
                    min(begin + args.chunk, len(todo)), time.monotonic() - began, summary)
    return 0


def _report(shard: str, path: Path, run_id: int, total: int, done_now: int, seconds: float,
            summary: LabelSummary) -> None:
    """One progress line after a chunk: the run's counts in the shard's label file so far."""
    from img2latex_lib.labels import read_labels

    counts = Counter(row["status"] for (_, run), row in read_labels(path).items()
                     if run == run_id)
    decided = sum(counts.values())
    rate = 60 * sum(summary.counts.values()) / seconds if seconds else 0.0
    eta = (total - decided) / rate if rate else float("inf")
    print(f"{time.strftime('%H:%M:%S')} {shard}: {decided}/{total} decided ("
          + ", ".join(f"{counts[s]} {s}" for s in ("accepted", "rejected", "ambiguous", "failed"))
          + f"); chunk of {sum(summary.counts.values())} in {seconds:.0f} s, {rate:.1f} images/min"
          f", shard done in {eta:.0f} min; {done_now} labelled this run", flush=True)


if __name__ == "__main__":
    sys.exit(main())
