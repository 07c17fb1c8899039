"""One round of self-training, resumable: pseudo-label unlabeled real images with the current
model, retrain it (warm start) on the labelled data plus every accepted pseudo-label, evaluate
on the development test set, and add a row to the rounds table.

    python benchmarks/self_training.py --round 1 --init checkpoints/img2latex-base \
        --unlabeled data/cache/train_unlabeled/images --limit 3000 \
        --data data/im2latex100k_val:0-6974x4 data/gen/tex40k data/gen/k12_15k \
        --num_epochs 1 [--work runs/selftrain] [--n 1000] [--quick]

Round k labels into WORK/pseudo/round<k> (skipping images accepted in earlier rounds), trains
into WORK/round<k> (its best/ or last/ checkpoint is the next round's --init) on --data plus
WORK/pseudo/round1..k, and writes WORK/rounds.md. Stopped anywhere, the same command goes on
where it stopped: labelling skips decided images, training resumes from its last checkpoint,
and finished steps are not redone (times are kept in WORK/round<k>.json, labelling's after
every 500 images).
--quick: a smoke test on a few rendered images, a few training steps and 10 dev-test images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import table
from _devtest import dev_test

from img2latex_lib import cli, metrics
from img2latex_lib.datasets import atomic_write
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.selftrain import (
    Verifier,
    accepted_names,
    image_files,
    pseudo_label,
    read_decisions,
)
from img2latex_lib.tokenizer import normalize

COLUMNS = ("round", "labelled", "accepted", "accepted (all rounds)", "labelling s", "training s",
           "greedy BLEU-4", "greedy edit", "greedy exact", "beam5 BLEU-4", "beam5 edit",
           "beam5 exact")


def _state(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def label(args, state: dict, pseudo_dirs: list[Path], save) -> None:
    """Step 1: pseudo-label this round's images (resumable), in chunks of 500 images so that
    the time spent survives a killed run."""
    out = pseudo_dirs[-1]
    excluded = accepted_names(pseudo_dirs[:-1])
    images = [p for p in image_files([args.unlabeled])[args.offset :] if p.name not in excluded]
    images = images[: args.limit]
    producer, verifier = LatexProducer(args.init), Verifier()
    for start in range(0, len(images), 500):
        summary = pseudo_label(producer, images[start : start + 500], out, verifier,
                               round_index=args.round, beam_size=args.beam)
        decisions = read_decisions(out)
        state["labelled"] = len(decisions)
        state["accepted"] = sum(row["status"] == "accepted" for row in decisions.values())
        state["labelling_s"] = state.get("labelling_s", 0.0) + summary.seconds
        save()
        print(f"labelling: {state['accepted']} of {state['labelled']} accepted so far; "
              f"this chunk {summary}")


def train(args, state: dict, pseudo_dirs: list[Path], run_dir: Path) -> None:
    """Step 2: warm-started training on --data and every round's pseudo-labels (resumable)."""
    pseudo = [f"{d}x{args.pseudo_repeat}" for d in pseudo_dirs
              if (d / "matching.txt").exists() and (d / "matching.txt").stat().st_size]
    command = ["train", "--init", str(args.init), "--data", *args.data, *pseudo,
               "--num_epochs", str(args.num_epochs), "--lr", str(args.lr),
               "--warmup_steps", str(args.warmup_steps), "--batch_size", str(args.batch_size),
               "--checkpoint_every", str(args.checkpoint_every), "--save_dir", str(run_dir),
               "--resume"]
    if args.val:
        command += ["--val", args.val]
    if args.augment:
        command.append("--augment")
    if args.max_steps:
        command += ["--max_steps", str(args.max_steps)]
    if args.max_minutes:
        command += ["--max_minutes", str(args.max_minutes)]
    start = time.perf_counter()
    if cli.main(command) != 0:
        raise SystemExit("training failed (see above); rerun the same command to resume")
    state["training_s"] = state.get("training_s", 0.0) + time.perf_counter() - start


def evaluate(args, state: dict, checkpoint: Path) -> None:
    """Step 3: dev-test BLEU-4, edit score and exact match, greedy and beam 5."""
    samples = dev_test(10 if args.quick else args.n)
    references = [normalize(s.formula) for s in samples]
    producer = LatexProducer(checkpoint)
    for beam, name in ((1, "greedy"), (5, "beam5")):
        hypotheses = [normalize(p) for p in producer.predict([s.image for s in samples],
                                                             beam_size=beam)]
        figures = metrics.evaluate(references, hypotheses)
        for key, column in (("bleu4", "BLEU-4"), ("edit_score", "edit"), ("exact_match", "exact")):
            state[f"{name} {column}"] = round(figures[key], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--init", type=Path, required=True, help="the previous round's model")
    parser.add_argument("--unlabeled", type=Path, required=True, help="folder of PNG images")
    parser.add_argument("--offset", type=int, default=0,
                        help="start at this image (e.g. past those earlier rounds decided)")
    parser.add_argument("--limit", type=int, default=None, help="images labelled this round")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--data", nargs="+", required=True, help="labelled data, as for train")
    parser.add_argument("--val", default=None, help="validation data, as for train")
    parser.add_argument("--pseudo_repeat", type=int, default=4,
                        help="times each accepted pseudo-label is seen per epoch")
    parser.add_argument("--num_epochs", type=int, default=1)
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--max_minutes", type=float, default=None,
                        help="training time budget (the learning rate decays over it)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--checkpoint_every", type=int, default=300)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("runs/selftrain"))
    parser.add_argument("--n", type=int, default=1000, help="dev-test images evaluated")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    state_path = args.work / f"round{args.round}.json"
    state = _state(state_path)
    pseudo_dirs = [args.work / "pseudo" / f"round{k}" for k in range(1, args.round + 1)]
    run_dir = args.work / f"round{args.round}"
    def save() -> None:
        atomic_write(state_path, json.dumps(state, indent=2))

    for step, run in (("labelled_done", lambda: label(args, state, pseudo_dirs, save)),
                      ("trained_done", lambda: train(args, state, pseudo_dirs, run_dir)),
                      ("evaluated_done", lambda: evaluate(args, state, run_dir / "last"))):
        if not state.get(step):
            run()
            state[step] = True
            save()
    state["accepted (all rounds)"] = len(accepted_names(pseudo_dirs))
    save()

    rows = []
    for path in sorted(args.work.glob("round*.json"), key=lambda p: int(p.stem[5:])):
        s = _state(path)
        values = {"round": path.stem[5:], "labelling s": round(s.get("labelling_s", 0)),
                  "training s": round(s.get("training_s", 0)), **s}
        rows.append([values.get(c, "") for c in COLUMNS])
    text = table(list(COLUMNS), rows)
    (args.work / "rounds.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
