"""Shared helpers of the benchmark scripts: sample images and a printed table."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

VAL_DIR = Path(__file__).resolve().parents[1] / "data" / "im2latex100k_val"


def machine() -> str:
    """One line naming the machine the figures come from."""
    import os

    import keras

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
            f"keras {keras.__version__} ({keras.backend.backend()})")


def sample_data(n: int, first_id: int = 0) -> tuple[list[str], list[str], str]:
    """``n`` formula images with their formulas: real val images when present, else freshly
    rendered synthetic formulas; and a description of which."""
    if (VAL_DIR / "matching.txt").exists():
        from img2latex_lib.datasets import load

        dataset = load(VAL_DIR, ids=range(first_id, first_id + 2 * n + 10))
        samples = dataset.samples[:n]
        return ([str(s.image) for s in samples], [s.formula for s in samples],
                "real im2latex-100k val images")
    dataset = synthetic_dataset(n)
    return ([str(p) for p in dataset.images], dataset.formulas,
            "rendered synthetic formulas")


def synthetic_dataset(n: int, seed: int = 1, folder: Path | None = None):
    """``n`` synthetic formulas rendered by the default renderer into ``folder`` (default: a
    fresh temporary folder), as a ``datasets.Dataset``."""
    import tempfile

    from img2latex_lib.datasets import build_dataset
    from img2latex_lib.render import default_renderer
    from img2latex_lib.synth import generate_formulas

    folder = folder or Path(tempfile.mkdtemp(prefix="img2latex-bench-"))
    return build_dataset(generate_formulas(n, seed=seed), default_renderer(), folder,
                         progress=False)


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def median_ms(fn: Callable, items: list) -> float:
    """Median milliseconds of ``fn(item)`` over ``items``, after one untimed call (tracing,
    caches)."""
    fn(items[0])
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
