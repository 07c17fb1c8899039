"""Run the peer ``latex-ocr-junia`` (PyPI; it ships its own weights) on the development test set.

    python benchmarks/peer.py --setup       # make .venv-peer: CPU torch 2.13.0, latex-ocr-junia
    python benchmarks/peer.py [--n 1000] [--every K] [--beam-size 3] [--workers 1] [--threads 1]
                              [--out TSV]

The peer runs in its own virtual environment (``.venv-peer``, git-ignored) so that its PyTorch
stays out of ours; ``benchmarks/peer_runner.py`` is the script that environment's python runs.
Its weights (``assets/best.pt``, 95 MB) come inside the package: nothing is downloaded at run
time. The run resumes where a killed one stopped (raw results ``<out stem>.raw<k>.tsv``).
On this CPU the peer needs 35-95 s for an image whose decoding runs to its 512-character limit
(most of them); ``--every 10`` runs it on every tenth image, a sample spread over the whole set.

The peer's output is a display: ``$$ ... $$``, ``\\begin{equation*} ... \\end{equation*}``.
Those math-mode wrappers are removed (counted in the output) before the prediction is written to
``<out>`` (``id, reference, prediction``), which ``benchmarks/accuracy.py --peer`` scores.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _devtest import OUT_DIR, ROOT, dev_test, write_tsv

VENV = ROOT / ".venv-peer"
PYTHON = VENV / "bin" / "python"
RUNNER = Path(__file__).resolve().with_name("peer_runner.py")
PACKAGES = (("torch", "2.13.0"), ("latex-ocr-junia", "0.1.3"))  # torch first: the CPU wheel
OPENERS = ("$$", "$", "\\[", "\\(", *(f"\\begin{{{env}}}" for env in (
    "equation*", "equation", "displaymath", "math")))
CLOSERS = ("$$", "$", "\\]", "\\)", *(f"\\end{{{env}}}" for env in (
    "equation*", "equation", "displaymath", "math")))


def setup() -> None:
    """Create ``.venv-peer`` and install the pinned packages (nothing to do if already there)."""
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    for package, version in PACKAGES:
        check = (f"import importlib.metadata as m; "
                 f"assert m.version({package!r}).split('+')[0] == {version!r}")
        if subprocess.run([str(PYTHON), "-c", check], capture_output=True).returncode != 0:
            subprocess.run([str(PYTHON), "-m", "pip", "install", f"{package}=={version}"],
                           check=True)
    info = subprocess.run([str(PYTHON), "-c", "import torch; print(torch.__version__)"],
                          check=True, capture_output=True, text=True).stdout.strip()
    print(f"{VENV.name}: torch {info}, latex-ocr-junia {PACKAGES[1][1]}")


def unwrap(latex: str) -> tuple[str, bool]:
    """The formula without a leading math-mode opener and a trailing closer; whether any was."""
    text = latex.strip()
    opener = next((o for o in OPENERS if text.startswith(o)), "")
    text = text[len(opener):]
    closer = next((c for c in CLOSERS if text.endswith(c)), "")
    text = text[: len(text) - len(closer)]
    return text.strip(), bool(opener or closer)


def read_raw(paths: list[Path]) -> dict[int, tuple[float, bool, str]]:
    """Runner results by id: seconds, whether decoding ended at <eos>, prediction."""
    results = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            key, seconds, finished, latex = (line.split("\t") + [""])[:4]
            results[int(key)] = (float(seconds), finished == "1", latex)
    return results


def run(samples: list, raw_stem: Path, beam: int, workers: int, threads: int) -> float:
    """Run the images not yet done in ``workers`` runner processes; return the wall time."""
    done = read_raw(sorted(raw_stem.parent.glob(raw_stem.name + ".raw*.tsv")))
    todo = [s for s in samples if s.formula_id not in done]
    shards = [todo[k::workers] for k in range(workers) if todo[k::workers]]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        processes = []
        for k, shard in enumerate(shards):
            listing = Path(folder) / f"{k}.tsv"
            listing.write_text("".join(f"{s.formula_id}\t{s.image.resolve()}\n" for s in shard))
            processes.append(subprocess.Popen([
                str(PYTHON), str(RUNNER), str(listing), str(raw_stem) + f".raw{k}.tsv",
                "--beam-size", str(beam), "--threads", str(threads)]))
        if any(p.wait() != 0 for p in processes):
            sys.exit("the peer runner failed (its error is above); rerun to resume")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="create .venv-peer and exit")
    parser.add_argument("--n", type=int, default=1000, help="first n ids of the dev test set")
    parser.add_argument("--every", type=int, default=1,
                        help="only every K-th of those images (a sample spread over them)")
    parser.add_argument("--beam-size", type=int, default=3, help="the package's default is 3")
    parser.add_argument("--workers", type=int, default=1, help="runner processes in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: test-output/accuracy/latex-ocr-junia-<decoding>.tsv")
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if not PYTHON.exists():
        sys.exit(f"{VENV.name} not found: run python benchmarks/peer.py --setup first")
    decoding = "greedy" if args.beam_size == 1 else f"beam{args.beam_size}"
    out = args.out or OUT_DIR / f"latex-ocr-junia-{decoding}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.every < 1:
        sys.exit(f"--every must be at least 1, got {args.every}")
    samples = dev_test(args.n)[:: args.every]

    wall = run(samples, out.with_suffix(""), args.beam_size, args.workers, args.threads)
    results = read_raw(sorted(out.parent.glob(out.stem + ".raw*.tsv")))
    samples = [s for s in samples if s.formula_id in results]
    unwrapped = [unwrap(results[s.formula_id][2]) for s in samples]
    write_tsv(out, samples, [latex for latex, _ in unwrapped])
    seconds = [results[s.formula_id][0] for s in samples]
    print(f"latex-ocr-junia, {decoding}, {args.workers} process(es) x {args.threads} thread(s): "
          f"{len(samples)} images in {out}")
    print(f"s/image in one process: median {statistics.median(seconds):.1f}, "
          f"mean {statistics.mean(seconds):.1f}, max {max(seconds):.1f} "
          f"(this run's wall time {wall:.0f} s)")
    cut = sum(not results[s.formula_id][1] for s in samples)
    print(f"stopped at the 512-character limit: {cut}; "
          f"math-mode wrapper removed: {sum(flag for _, flag in unwrapped)}")


if __name__ == "__main__":
    main()
