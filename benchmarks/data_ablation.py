"""Which training data helps: the same starting model fine-tuned for the same number of steps on
mixes that leave one data source out, each scored on the development test set (greedy).

    python benchmarks/data_ablation.py --init checkpoints/img2latex-base --steps 400 \
        --source real=data/im2latex100k_val:0-6974x4 --source tex=data/gen/tex40k \
        --source k12=data/gen/k12_15k --source pseudo=runs/selftrain/pseudo/round1x4 \
        [--n 1000] [--work runs/ablation] [--quick]

Mixes: every source; every source but one, for each source after the first; the first alone
(the first is the anchor, e.g. the real labelled images). Each mix trains --steps steps of
--batch_size samples (the same budget for all; the learning rate warms up and decays over
them) into WORK/<mix>, resumable, and its scores are kept in WORK/<mix>.json, so a rerun only
does what is missing. The table goes to WORK/ablation.md. Never put dev-test ids in a source.
--quick: a smoke test on rendered formulas, 3 steps and 10 dev-test images.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import machine, table
from _devtest import dev_test

from img2latex_lib import cli, metrics
from img2latex_lib.datasets import atomic_write, build_dataset
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.render import default_renderer
from img2latex_lib.synth import generate_formulas
from img2latex_lib.tokenizer import normalize


def mixes(names: list[str]) -> dict[str, list[str]]:
    """Mix name -> the source names in it."""
    out = {"all": list(names)}
    for left_out in names[1:]:
        out[f"without {left_out}"] = [n for n in names if n != left_out]
    if len(names) > 2:  # with two sources, leaving out the second is the first alone
        out[f"{names[0]} only"] = names[:1]
    return out


def train_and_score(args, name: str, specs: list[str], run_dir: Path) -> dict:
    """Fine-tune --init on ``specs`` for --steps steps and score the result on the dev-test."""
    start = time.perf_counter()
    command = ["train", "--init", str(args.init), "--data", *specs, "--max_steps",
               str(args.steps), "--lr", str(args.lr), "--warmup_steps", str(args.warmup_steps),
               "--batch_size", str(args.batch_size), "--checkpoint_every", "100",
               "--save_dir", str(run_dir), "--resume", "--augment"]
    if cli.main(command) != 0:
        raise SystemExit(f"{name}: training failed (see above); rerun to resume")
    trained = time.perf_counter() - start
    samples = dev_test(10 if args.quick else args.n)
    hypotheses = LatexProducer(run_dir / "last").predict([s.image for s in samples])
    figures = metrics.evaluate([normalize(s.formula) for s in samples],
                               [normalize(h) for h in hypotheses])
    return {"mix": name, "sources": specs, "steps": args.steps, "training_s": round(trained),
            **{k: round(v, 3) for k, v in figures.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", type=Path, required=True, help="the common starting model")
    parser.add_argument("--source", action="append", default=[], metavar="NAME=SPEC",
                        help="a data source, as for train --data (the first is the anchor)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup_steps", type=int, default=50)
    parser.add_argument("--n", type=int, default=1000, help="dev-test images scored")
    parser.add_argument("--work", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory()
    if args.quick:  # two tiny rendered sources instead of the real ones
        args.steps, args.warmup_steps, args.batch_size = 3, 1, 4
        args.work = Path(scratch.name) / "work"
        args.source = []
        for name, seed in (("a", 1), ("b", 2)):
            folder = Path(scratch.name) / name
            formulas = generate_formulas(8, seed=seed)
            build_dataset(formulas, default_renderer(), folder, progress=False)
            args.source.append(f"{name}={folder}")
    sources = dict(item.split("=", 1) for item in args.source)
    if len(sources) < 2:
        parser.error("give at least two --source NAME=SPEC")
    print(f"{machine()}\nstarting model: {args.init}; {args.steps} steps of {args.batch_size}")

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, members in mixes(list(sources)).items():
        slug = name.replace(" ", "_")
        result_path = args.work / f"{slug}.json"
        if result_path.exists():
            result = json.loads(result_path.read_text())
        else:
            result = train_and_score(args, name, [sources[m] for m in members], args.work / slug)
            atomic_write(result_path, json.dumps(result, indent=2))
        rows.append([name, " + ".join(members), result["training_s"], result["bleu4"],
                     result["edit_score"], result["exact_match"], result["token_accuracy"]])
    text = table(["mix", "sources", "training s", "greedy BLEU-4", "edit", "exact",
                  "token acc"], rows)
    (args.work / "ablation.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
