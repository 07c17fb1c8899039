"""What each typesetting style costs per formula, rendering batches of --batch formulas.

Formulas come from `img2latex_lib.synth.generate_formulas` (seeded), so every style sees the same
ones. Each style renders one small batch first (starting Chromium or worker processes), then
--batches batches that are timed. CPU time counts this process and its finished children (TeX,
Ghostscript); Chromium's own CPU time is not in it, so web styles show wall clock only.

    python benchmarks/style_speed.py [--batch 50] [--batches 2] [--styles times,katex,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

try:
    import resource
except ImportError:  # Windows
    resource = None

from img2latex_lib.styles import available_styles, get_style, missing, style_renderer
from img2latex_lib.synth import generate_formulas


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    if resource is None:
        return float("nan")
    own, children = (resource.getrusage(who)
                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(name: str, formulas: list[str], batch: int, batches: int, workers: int) -> str:
    """One table row: ms per formula (wall, CPU), failures, first-batch time."""
    renderer = style_renderer(name, workers=workers)
    start = time.perf_counter()
    renderer.render_batch(formulas[:2])
    warm = time.perf_counter() - start
    timed = formulas[: batch * batches]
    start, cpu, failed = time.perf_counter(), cpu_seconds(), 0
    for first in range(0, len(timed), batch):
        results = renderer.render_batch(timed[first : first + batch])
        failed += sum(result.error is not None for result in results)
    wall = time.perf_counter() - start
    close = getattr(renderer, "close", None)
    if close is not None:
        close()  # mathtext workers' CPU counts once they end
    cpu = cpu_seconds() - cpu
    engine = get_style(name).engine
    cpu_text = "    -" if engine in ("katex", "mathjax") else f"{1000 * cpu / len(timed):5.0f}"
    return (f"{name:22s} {engine:9s} {1000 * wall / len(timed):7.0f} {cpu_text:>7s}"
            f" {failed:4d}/{len(timed):<4d} {warm:7.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50, help="formulas per batch (default 50)")
    parser.add_argument("--batches", type=int, default=2, help="timed batches (default 2)")
    parser.add_argument("--styles", default="", help="comma-separated styles (default: all here)")
    parser.add_argument("--workers", type=int, default=2, help="parallel TeX runs (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the formulas")
    args = parser.parse_args(argv)
    names = [n for n in args.styles.split(",") if n] or available_styles()
    formulas = generate_formulas(args.batch * args.batches, seed=args.seed)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{args.batches} batches of {args.batch} synthetic formulas (seed {args.seed}), "
          f"workers {args.workers}, {os.cpu_count()} CPUs{load}")
    print(f"{'style':22s} {'engine':9s} {'ms/f':>7s} {'CPU ms':>7s} {'failed':>9s} {'first s':>7s}")
    for name in names:
        reason = missing(name)
        if reason is not None:
            print(f"{name:22s} skipped: {reason}")
            continue
        print(measure(name, formulas, args.batch, args.batches, args.workers), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
