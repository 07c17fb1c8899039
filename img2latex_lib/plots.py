"""Small matplotlib helpers for the notebooks: image grids, real-vs-rendered pairs, CNN feature
maps, attention over an image, a block diagram and training curves. Each returns the figure it
drew. ``abbreviate`` shortens a long list of tokens for a printed table."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import MaxNLocator
from PIL import Image

Picture = Image.Image | np.ndarray


def abbreviate(items: Sequence[str], shown: int = 4) -> str:
    """The first ``shown`` items joined by spaces, then ``… (N)`` with the count of all of them
    when some are left out: ``abbreviate(["a", "b", "c"], 2) == "a b … (3)"``."""
    if shown < 1:
        raise ValueError(f"shown must be at least 1, not {shown}")
    text = " ".join(items[:shown])
    return text + (f" … ({len(items)})" if len(items) > shown else "")


def _pixels(image: Picture) -> np.ndarray:
    """A 2-D array (PIL images and ``[H, W, 1]`` model inputs alike)."""
    array = np.asarray(image)
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def _draw(ax, image: Picture, title: str | None = None) -> None:
    pixels = _pixels(image)
    top = 1.0 if pixels.dtype.kind == "f" and pixels.max() <= 1.0 else 255
    ax.imshow(pixels, cmap="gray", vmin=0, vmax=top, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:  # a "$" would start matplotlib's math mode
        ax.set_title(title.replace("$", r"\$"), fontsize=8, loc="left")


def show_images(
    images: Sequence[Picture],
    titles: Sequence[str] | None = None,
    ncols: int = 1,
    width: float = 8.0,
    row_height: float = 1.0,
) -> Figure:
    """Images in a grid of ``ncols`` columns (one axes each), grey levels as they are."""
    if not images:
        raise ValueError("show_images needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, row_height * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < len(images):
            _draw(ax, images[k], titles[k] if titles is not None else None)
        else:
            fig.delaxes(ax)
    fig.tight_layout()
    return fig


def side_by_side(
    left: Sequence[Picture],
    right: Sequence[Picture],
    titles: tuple[str, str] = ("real", "rendered"),
    width: float = 9.0,
    row_height: float = 0.9,
) -> Figure:
    """Pairs of images in two columns (e.g. a real image next to a render of its formula)."""
    if len(left) != len(right) or not left:
        raise ValueError(f"side_by_side needs pairs: got {len(left)} and {len(right)} images")
    fig, axes = plt.subplots(len(left), 2, figsize=(width, row_height * len(left)), squeeze=False)
    for row, pair in enumerate(zip(left, right, strict=True)):
        for col, image in enumerate(pair):
            _draw(axes[row, col], image, titles[col] if row == 0 else None)
    fig.tight_layout()
    return fig


def feature_maps(
    maps: Sequence[np.ndarray], channels: int = 4, names: Sequence[str] | None = None,
    width: float = 10.0,
) -> Figure:
    """The first ``channels`` channels of each ``[H, W, C]`` map: one row per map, each channel
    scaled to its own range (bright = strong activation)."""
    if not maps:
        raise ValueError("feature_maps needs at least one map")
    fig, axes = plt.subplots(len(maps), channels, figsize=(width, 0.8 * len(maps)), squeeze=False)
    for row, fmap in enumerate(maps):
        fmap = np.asarray(fmap)
        for col in range(channels):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < fmap.shape[-1]:
                ax.imshow(fmap[..., col], cmap="magma", aspect="auto", interpolation="nearest")
        label = names[row] if names is not None else f"block {row + 1}"
        axes[row, 0].set_ylabel(f"{label}\n{fmap.shape[0]}x{fmap.shape[1]}", fontsize=7)
    fig.tight_layout()
    return fig


def show_attention(
    image: Picture, weights: np.ndarray, titles: Sequence[str] | None = None,
    width: float = 8.0, row_height: float = 1.0,
) -> Figure:
    """Attention maps ``[K, rows, cols]`` laid over the image they attend to, one row each
    (one colour scale from 0 to the largest weight, so an even spread looks even)."""
    weights = np.asarray(weights)
    if weights.ndim != 3:
        raise ValueError(f"attention must be [maps, rows, cols], got shape {weights.shape}")
    pixels = _pixels(image)
    height, span = pixels.shape[:2]
    fig, axes = plt.subplots(len(weights), 1, figsize=(width, row_height * len(weights)),
                             squeeze=False)
    for k, (ax, grid) in enumerate(zip(axes[:, 0], weights, strict=True)):
        _draw(ax, image, titles[k] if titles is not None else None)
        ax.imshow(grid, cmap="inferno", alpha=0.55, extent=(0, span, height, 0),
                  interpolation="bilinear", vmin=0.0, vmax=float(weights.max()))
    fig.tight_layout()
    return fig


def block_diagram(
    lanes: Sequence[Sequence[str]],
    links: Sequence[tuple[tuple[int, int], tuple[int, int]]] = (),
    lane_titles: Sequence[str] | None = None,
    width: float = 11.0,
) -> Figure:
    """Boxes in horizontal lanes, each lane a left-to-right chain of arrows; ``links`` join box
    ``(lane, index)`` to box ``(lane, index)`` across lanes."""
    if not lanes or not all(lanes):
        raise ValueError("block_diagram needs lanes with at least one box each")
    columns = max(len(lane) for lane in lanes)
    fig, ax = plt.subplots(figsize=(width, 1.6 * len(lanes)))
    ax.set_xlim(-0.1, columns)
    ax.set_ylim(-0.3, len(lanes) * 1.4)
    ax.axis("off")
    centre: dict[tuple[int, int], tuple[float, float]] = {}
    for row, lane in enumerate(lanes):
        y = (len(lanes) - 1 - row) * 1.4 + 0.5
        if lane_titles is not None:
            ax.text(-0.05, y + 0.5, lane_titles[row], fontsize=9, weight="bold")
        for col, label in enumerate(lane):
            ax.add_patch(FancyBboxPatch((col + 0.06, y - 0.35), 0.78, 0.7,
                                        boxstyle="round,pad=0.02", facecolor="#e8eef7",
                                        edgecolor="#34558b"))
            ax.text(col + 0.45, y, label, ha="center", va="center", fontsize=7.5)
            centre[row, col] = (col + 0.45, y)
            if col:
                ax.add_patch(FancyArrowPatch((col - 0.14, y), (col + 0.04, y),
                                             arrowstyle="-|>", mutation_scale=10))
    for start, end in links:
        (x0, y0), (x1, y1) = centre[start], centre[end]
        step = 0.37 if y1 < y0 else -0.37
        ax.add_patch(FancyArrowPatch((x0, y0 - step), (x1, y1 + step), arrowstyle="-|>",
                                     mutation_scale=10, color="#b5472d",
                                     connectionstyle="arc3,rad=0.0"))
    fig.tight_layout()
    return fig


CURVE_LABELS = {"loss": "training loss", "masked_accuracy": "training token accuracy",
                "val_bleu": "validation BLEU-4", "val_exact": "validation exact match"}


def training_curves(
    log: str | Path, metrics: Sequence[str] = tuple(CURVE_LABELS), width: float = 10.0
) -> Figure:
    """One panel per metric of a Keras CSV log (the ``log.csv`` a ``Trainer`` writes), against
    the epoch. Metrics the log lacks are left out; where a resumed run logged an epoch again,
    its last row counts."""
    with open(log, newline="") as file:
        rows = {int(row["epoch"]): row for row in csv.DictReader(file)}
    if not rows:
        raise ValueError(f"{log}: no epoch logged yet (Keras writes a row when an epoch ends)")
    epochs = sorted(rows)
    series = {}
    for name in metrics:
        points = [(e + 1, float(rows[e][name])) for e in epochs
                  if rows[e].get(name) not in (None, "", "NA", "nan")]
        if points:
            series[name] = np.array(points)
    if not series:
        raise ValueError(f"{log}: none of {', '.join(metrics)} is in the log")
    fig, axes = plt.subplots(1, len(series), figsize=(width, 2.8), squeeze=False)
    for ax, (name, points) in zip(axes[0], series.items(), strict=True):
        ax.plot(points[:, 0], points[:, 1], marker="o", markersize=3)
        ax.set(xlabel="epoch", title=CURVE_LABELS.get(name, name))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
