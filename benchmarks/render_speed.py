"""Formulas per second for each renderer (LaTeX batches and matplotlib mathtext).

Uses the first --n formulas of data/im2latex100k_val/formulas.norm.lst when that file exists, else
a small built-in list repeated; the first line of output says which.

    python benchmarks/render_speed.py [--n 500] [--quick] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

try:
    import resource
except ImportError:  # Windows
    resource = None

from img2latex_lib.render import LatexRenderer, MathtextRenderer, Renderer, latex_available

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "data" / "im2latex100k_val" / "formulas.norm.lst"
TARGETS = {"latex": 20.0, "mathtext": 50.0}  # formulas/s on a 2-core machine
BUILT_IN = [
    r"E = m c ^ { 2 }",
    r"\frac { \partial u } { \partial t } = \alpha \nabla ^ { 2 } u",
    r"\int _ { 0 } ^ { \infty } e ^ { - x ^ { 2 } } d x = \frac { \sqrt { \pi } } { 2 }",
    r"\sum _ { n = 1 } ^ { \infty } \frac { 1 } { n ^ { 2 } } = \frac { \pi ^ { 2 } } { 6 }",
    r"\left( \frac { a + b } { c - d } \right) ^ { 2 } \geq 0",
    r"Z = \int { \cal D } \phi \, e ^ { i S [ \phi ] / \hbar }",
    r"\mathrm { d e t } ( A - \lambda I ) = 0",
    r"\Gamma ( z ) = \int _ { 0 } ^ { \infty } t ^ { z - 1 } e ^ { - t } \, d t",
    r"x _ { 1 , 2 } = \frac { - b \pm \sqrt { b ^ { 2 } - 4 a c } } { 2 a }",
    r"R _ { \mu \nu } - \frac { 1 } { 2 } g _ { \mu \nu } R = 8 \pi G T _ { \mu \nu }",
]


def load_formulas(n: int) -> tuple[list[str], str]:
    """The first `n` real formulas if available, else the built-in list repeated."""
    if REAL.exists():
        lines = [line for line in REAL.read_text(encoding="utf-8").split("\n") if line.strip()]
        return lines[:n], f"first {min(n, len(lines))} formulas of im2latex100k_val"
    repeated = list(itertools.islice(itertools.cycle(BUILT_IN), n))
    return repeated, f"{len(BUILT_IN)} built-in formulas repeated to {n} (no real data found)"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (pdflatex, gs, worker processes)."""
    if resource is None:
        return float("nan")
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(name: str, renderer: Renderer, formulas: list[str], target: float) -> None:
    """Render once for warm-up, then time the whole batch and print one row.

    On a shared machine the wall-clock rate depends on the load; formulas per CPU-second do not.
    """
    renderer.render_batch(formulas[:2])
    start, cpu = time.perf_counter(), cpu_seconds()
    results = renderer.render_batch(formulas)
    seconds = time.perf_counter() - start
    if isinstance(renderer, MathtextRenderer):
        renderer.close()  # its worker processes count as CPU time of children once they end
    cpu = cpu_seconds() - cpu
    failed = sum(result.error is not None for result in results)
    rate = len(formulas) / seconds
    verdict = "ok" if rate >= target else "BELOW TARGET"
    print(
        f"{name:38s} {len(formulas):5d} {failed:6d} {seconds:8.2f} {rate:10.1f}"
        f" {len(formulas) / cpu:10.1f}   >= {target:.0f} {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="formulas per renderer (default 500)")
    parser.add_argument("--quick", action="store_true", help="only 60 formulas")
    parser.add_argument("--workers", type=int, default=2, help="parallel runs/processes")
    args = parser.parse_args(argv)
    formulas, source = load_formulas(60 if args.quick else args.n)
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"formulas: {source}; workers: {args.workers}; {os.cpu_count()} CPUs{load}")
    print(
        f"{'renderer':38s} {'n':>5s} {'failed':>6s} {'seconds':>8s} {'formulas/s':>10s}"
        f" {'per CPU-s':>10s}   target (wall clock)"
    )
    if latex_available():
        for template in ("im2latex", "amsmath"):
            renderer = LatexRenderer(template=template, workers=args.workers)
            measure(f"LatexRenderer({template})", renderer, formulas, TARGETS["latex"])
    else:
        print("LatexRenderer: skipped (pdflatex or gs not on PATH)")
    for fonts in (("cm",), ("cm", "stix", "dejavuserif")):
        renderer = MathtextRenderer(fonts=fonts, workers=args.workers)
        measure(f"MathtextRenderer({', '.join(fonts)})", renderer, formulas, TARGETS["mathtext"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
