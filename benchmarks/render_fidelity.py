"""How closely do rendered formulas look like the real im2latex-100k images of the same formulas?

For formulas of the im2latex-100k validation split (ids below 7475 only: the ids from 7475 on are
the development test set), each rasterisation variant renders the formula; real and rendered
images are both cropped to their non-white pixels and compared: size, the share of dark pixels
(< 128), the share of faint halo pixels (248-254), the halo width (how far faint pixels reach past
the pixels < 248) and the L1 distance between their grey-level histograms. Prints one table row
per variant and saves real|rendered pairs for 8 formulas as a figure.

    python benchmarks/render_fidelity.py [--n 200] [--out test-output/render_fidelity.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from img2latex_lib.render import LatexRenderer, latex_available

ROOT = Path(__file__).resolve().parent.parent
DEV_IDS = 7475  # ids from here on are the held-out development test set


@dataclass
class Variant:
    """A rasterisation to compare: renderer settings plus an optional tone curve."""

    name: str
    options: dict = field(default_factory=dict)
    curve: Callable[[np.ndarray], np.ndarray] | None = None


VARIANTS = [
    Variant("antialias 200dpi (plain gs)", {"raster": "antialias"}),
    Variant("antialias 400dpi, /4", {"raster": "antialias", "dpi": 400, "downsample": 4}),
    Variant(
        "antialias 200dpi + gamma 2.2",
        {"raster": "antialias"},
        lambda a: (255 * (a / 255.0) ** 2.2).round().astype(np.uint8),
    ),
    Variant("mono 200dpi (no antialias)", {"raster": "mono"}),
    Variant("coverage 400dpi, /4", {"raster": "coverage", "dpi": 400, "downsample": 4}),
    Variant("coverage 200dpi (default)", {"raster": "coverage"}),
    Variant(
        "coverage 200dpi, amsmath", {"raster": "coverage", "template": "amsmath", "strict": False}
    ),
]


def crop_nonwhite(gray: np.ndarray) -> np.ndarray | None:
    """Crop to the pixels that are not pure white (None when there are none)."""
    rows = np.flatnonzero((gray < 255).any(axis=1))
    cols = np.flatnonzero((gray < 255).any(axis=0))
    if rows.size == 0:
        return None
    return gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def halo_width(gray: np.ndarray) -> float:
    """Mean gap, over the four sides, between the non-white box and the box of pixels < 248."""
    core = np.argwhere(gray < 248)
    if core.size == 0:
        return 0.0
    (top, left), (bottom, right) = core.min(axis=0), core.max(axis=0)
    return (top + left + (gray.shape[0] - 1 - bottom) + (gray.shape[1] - 1 - right)) / 4


def measure(rendered: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """Compare one rendered and one real image, both cropped to non-white."""
    hist = [np.bincount(a.ravel(), minlength=256) / a.size for a in (rendered, real)]
    return {
        "dw": abs(rendered.shape[1] - real.shape[1]),
        "dh": abs(rendered.shape[0] - real.shape[0]),
        "ink": float((rendered < 128).mean()),
        "ink_real": float((real < 128).mean()),
        "halo": float(((rendered >= 248) & (rendered < 255)).mean()),
        "halo_real": float(((real >= 248) & (real < 255)).mean()),
        "hw": halo_width(rendered),
        "hw_real": halo_width(real),
        "hist_l1": float(np.abs(hist[0] - hist[1]).sum()),
    }


def load_real(data: Path, ids: list[int]) -> tuple[list[str], dict[int, np.ndarray]]:
    """The formulas and the non-blank real images (cropped) for `ids`."""
    formulas = (data / "formulas.norm.lst").read_text(encoding="utf-8").split("\n")
    real = {}
    for i in ids:
        cropped = crop_nonwhite(np.asarray(Image.open(data / "images" / f"{i}.png").convert("L")))
        if cropped is not None:
            real[i] = cropped
    return formulas, real


def run_variant(variant: Variant, formulas: list[str], real: dict[int, np.ndarray]) -> dict:
    """Render the formulas with one variant and summarise the comparison."""
    renderer = LatexRenderer(**variant.options)
    ids = sorted(real)
    start = time.perf_counter()
    results = renderer.render_batch([formulas[i] for i in ids])
    seconds = time.perf_counter() - start
    rows, images = [], {}
    for i, result in zip(ids, results, strict=True):
        if result.image is None:
            continue
        gray = np.asarray(result.image)
        gray = variant.curve(gray) if variant.curve else gray
        cropped = crop_nonwhite(gray)
        if cropped is not None:
            images[i] = cropped
            rows.append(measure(cropped, real[i]))
    table = {key: np.array([row[key] for row in rows], dtype=float) for key in rows[0]}
    return {"table": table, "images": images, "ok": len(rows), "n": len(ids), "seconds": seconds}


def print_row(name: str, summary: dict) -> None:
    t = summary["table"]
    within = np.mean((t["dw"] <= 3) & (t["dh"] <= 3))
    print(
        f"{name:32s} {summary['ok']:>4d}/{summary['n']:<4d} {np.median(t['dw']):5.1f} "
        f"{np.median(t['dh']):5.1f} {within:6.2f}"
        f"  {t['ink'].mean():.3f} / {t['ink_real'].mean():.3f}"
        f"  {t['halo'].mean():.3f} / {t['halo_real'].mean():.3f}"
        f"  {t['hw'].mean():4.2f} / {t['hw_real'].mean():4.2f}  {t['hist_l1'].mean():.3f}"
    )


def save_figure(path: Path, pairs: list[tuple[int, np.ndarray, np.ndarray]], title: str) -> None:
    """Save real | rendered side by side, one formula per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 2, figsize=(12, 1.1 * len(pairs) + 0.6), squeeze=False)
    for row, (i, real, rendered) in enumerate(pairs):
        width = max(real.shape[1], rendered.shape[1])
        for col, (image, label) in enumerate(((real, "real"), (rendered, "rendered"))):
            ax = axes[row][col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_title(f"val {i}: {label} ({image.shape[1]}x{image.shape[0]} px)", fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="formulas to compare (default 200)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "im2latex100k_val")
    parser.add_argument("--out", type=Path, default=Path("test-output/render_fidelity.png"))
    args = parser.parse_args(argv)
    if not (args.data / "formulas.norm.lst").exists():
        print(
            f"no im2latex-100k validation data in {args.data}: nothing to compare", file=sys.stderr
        )
        return 1
    if not latex_available():
        print("pdflatex and Ghostscript (gs) are needed for this benchmark", file=sys.stderr)
        return 1
    ids = sorted({int(i) for i in np.linspace(0, DEV_IDS - 1, args.n)})
    formulas, real = load_real(args.data, ids)
    print(f"{len(real)} formulas of im2latex100k_val (ids 0..{DEV_IDS - 1}, evenly spaced)")
    print(
        f"{'variant':32s} {'ok':>9s} {'|dW|':>5s} {'|dH|':>5s} {'<=3px':>6s}  "
        f"{'ink<128 ren/real':16s}  {'halo ren/real':13s}  {'halo px ren/real':16s} hist L1"
    )
    summaries = {}
    for variant in VARIANTS:
        summaries[variant.name] = run_variant(variant, formulas, real)
        print_row(variant.name, summaries[variant.name])
    best = summaries["coverage 200dpi (default)"]
    shown = [i for i in sorted(best["images"])][:: max(1, len(best["images"]) // 8)][:8]
    pairs = [(i, real[i], best["images"][i]) for i in shown]
    save_figure(args.out, pairs, "real im2latex-100k (left) vs LatexRenderer default (right)")
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
