"""Small matplotlib helpers for the notebooks: image grids, real-vs-rendered pairs, CNN feature
maps, attention over an image and its path across it, a block diagram, training curves and an
input image above its rendered prediction (``predict --render``). Each returns the figure it
drew. ``abbreviate`` shortens a long list of tokens for a printed table."""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .preprocess import ImageSource, load_image
from .render import LatexRenderer, MathtextRenderer, Renderer, RenderError, latex_available

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


#: Font size of image titles, in points (readable at the notebooks' 80 dpi).
TITLE_SIZE = 11.0


def _wrapped(title: str, inches: float, size: float) -> str:
    """``title`` broken into lines that fit ``inches`` at ``size`` points (whole words kept)."""
    per_line = max(20, int(inches * 72 / (0.55 * size)))
    return "\n".join(textwrap.wrap(title, per_line, break_long_words=False)) or title


def _draw(ax, image: Picture, title: str | None = None, size: float = TITLE_SIZE) -> None:
    pixels = _pixels(image)
    top = 1.0 if pixels.dtype.kind == "f" and pixels.max() <= 1.0 else 255
    ax.imshow(pixels, cmap="gray", vmin=0, vmax=top, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:  # a "$" would start matplotlib's math mode
        ax.set_title(title.replace("$", r"\$"), fontsize=size, loc="left")


def show_images(
    images: Sequence[Picture],
    titles: Sequence[str] | None = None,
    ncols: int = 1,
    width: float = 8.0,
    row_height: float = 1.0,
    title_size: float = TITLE_SIZE,
) -> Figure:
    """Images in a grid of ``ncols`` columns (one axes each), grey levels as they are; long
    titles (a whole formula) are wrapped onto as many lines as they need, never cut."""
    if not images:
        raise ValueError("show_images needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    nrows = math.ceil(len(images) / ncols)
    def shown_width(image: Picture) -> float:  # inches the image takes: its aspect ratio rules
        rows, cols = _pixels(image).shape[:2]
        return max(3.0, min(width / ncols, 0.85 * row_height * cols / max(rows, 1)))

    texts = ([_wrapped(t, shown_width(image), title_size) for t, image in
              zip(titles, images, strict=True)] if titles else None)
    lines = max((t.count("\n") for t in texts), default=0) if texts else 0
    row_height += lines * title_size * 1.3 / 72  # room for the wrapped titles' extra lines
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, row_height * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < len(images):
            _draw(ax, images[k], texts[k] if texts is not None else None, title_size)
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


def attention_peaks(maps: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each step's attention map ``[steps, rows, cols]`` is strongest, as (x, y) pixel
    centres of the image it was computed over (``stride``: input pixels per grid cell). The peak,
    not the weighted mean: a map with one sharp spot and a faint spread over the rest of the
    image has its mean pulled towards the middle."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"attention must be [steps, rows, cols], got shape {maps.shape}")
    rows, cols = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
    return (cols + 0.5) * stride, (rows + 0.5) * stride


def attention_path(
    image: Picture, maps: np.ndarray, tokens: Sequence[str], stride: int, width: float = 11.0,
    font_size: float = 11.0,
) -> Figure:
    """The reading order of a decoded formula: the image, with each step's attention peak
    (:func:`attention_peaks`) marked and numbered, and below it one line per step, its token
    written at the peak's column. A model that reads left to right draws a staircase from the
    top left to the bottom right; scripts and fractions show as dots above and below the line."""
    if len(tokens) != len(maps):
        raise ValueError(f"{len(maps)} attention maps but {len(tokens)} tokens")
    pixels = _pixels(image)
    height, span = pixels.shape[:2]
    x, y = attention_peaks(maps, stride)
    steps = max(len(tokens), 1)
    strip = 0.22 * steps
    image_inches = width * height / span
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(width, image_inches + strip + 0.8), sharex=True,
        gridspec_kw={"height_ratios": [image_inches, strip]})
    _draw(top, image)
    top.plot(x, y, "-", color="tab:orange", linewidth=1, alpha=0.7)
    top.scatter(x, y, s=30, color="tab:orange", zorder=3)
    for k in range(0, len(tokens), max(1, len(tokens) // 15)):
        top.annotate(str(k), (x[k], y[k]), xytext=(2, 2), textcoords="offset points",
                     fontsize=font_size - 3, color="tab:blue")
    top.set_title("attention peak of each step over the image", fontsize=font_size, loc="left")
    for k, token in enumerate(tokens):  # "$" would start matplotlib's math mode
        bottom.text(x[k], k, token.replace("$", r"\$"), ha="center", va="center",
                    fontsize=font_size, family="monospace")
    bottom.plot(x, np.arange(len(tokens)), color="tab:orange", linewidth=0.8, alpha=0.4)
    bottom.set_ylim(steps - 0.5, -0.5)
    bottom.set_xlim(-0.03 * span, 1.03 * span)  # room for the tokens at either end
    bottom.set_ylabel("step", fontsize=font_size)
    bottom.set_xlabel("image column (pixels)", fontsize=font_size)
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def block_diagram(
    lanes: Sequence[Sequence[str]],
    links: Sequence[tuple[tuple[int, int], tuple[int, int]]] = (),
    lane_titles: Sequence[str] | None = None,
    width: float = 13.0,
    font_size: float = 12.0,
) -> Figure:
    """Boxes in horizontal lanes, each lane a left-to-right chain of arrows; ``links`` join box
    ``(lane, index)`` to box ``(lane, index)`` across lanes. ``font_size`` is the boxes' text in
    points (the lane titles are a little larger)."""
    if not lanes or not all(lanes):
        raise ValueError("block_diagram needs lanes with at least one box each")
    columns = max(len(lane) for lane in lanes)
    fig, ax = plt.subplots(figsize=(width, 2.2 * len(lanes)))
    ax.set_xlim(-0.1, columns)
    ax.set_ylim(-0.3, len(lanes) * 1.4)
    ax.axis("off")
    centre: dict[tuple[int, int], tuple[float, float]] = {}
    for row, lane in enumerate(lanes):
        y = (len(lanes) - 1 - row) * 1.4 + 0.5
        if lane_titles is not None:
            ax.text(-0.05, y + 0.5, lane_titles[row], fontsize=font_size + 1, weight="bold")
        for col, label in enumerate(lane):
            ax.add_patch(FancyBboxPatch((col + 0.03, y - 0.38), 0.84, 0.76,
                                        boxstyle="round,pad=0.02", facecolor="#e8eef7",
                                        edgecolor="#34558b"))
            ax.text(col + 0.45, y, label, ha="center", va="center", fontsize=font_size)
            centre[row, col] = (col + 0.45, y)
            if col:
                ax.add_patch(FancyArrowPatch((col - 0.11, y), (col + 0.03, y),
                                             arrowstyle="-|>", mutation_scale=14))
    for start, end in links:
        (x0, y0), (x1, y1) = centre[start], centre[end]
        step = 0.4 if y1 < y0 else -0.4
        ax.add_patch(FancyArrowPatch((x0, y0 - step), (x1, y1 + step), arrowstyle="-|>",
                                     mutation_scale=14, color="#b5472d",
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


def prediction_figure(image: ImageSource, latex: str, renderer: Renderer | None = None) -> Figure:
    """A matplotlib figure: the input image above the rendered prediction (or why it failed)."""
    source = load_image(image)
    try:
        rendered = (renderer or _figure_renderer()).render(latex)
        error = None
    except RenderError as failure:
        rendered, error = None, str(failure)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 3.2))
    top.imshow(source, cmap="gray", vmin=0, vmax=255)
    top.set_title("input", fontsize=9, loc="left")
    if rendered is not None:
        bottom.imshow(rendered, cmap="gray", vmin=0, vmax=255)
        bottom.set_title("prediction, rendered", fontsize=9, loc="left")
    else:
        bottom.text(0.01, 0.5, f"the prediction does not render: {error}", fontsize=9,
                    va="center", wrap=True)
    for axis in (top, bottom):
        axis.set_axis_off()
    figure.tight_layout()
    return figure


def _figure_renderer() -> Renderer:
    """The amsmath template draws everything a prediction may contain; mathtext without TeX."""
    return LatexRenderer(template="amsmath", strict=False) if latex_available() else (
        MathtextRenderer())
