"""Images named on a command line: each loaded on its own, so one bad file never stops the rest.

:func:`read_inputs` turns the names a user typed (paths, or ``-`` for standard input) into
:class:`Input` records that hold either a loaded image or a one-line reason why there is none,
plus warnings about images the model will read badly (far smaller or far wider than the
formulas it was trained on). The command line prints the reasons on stderr, one line each, and
predicts the rest in order.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from .preprocess import ImageError, crop_to_ink, fit_size, ink_bbox, load_image

#: The name that stands for standard input on the command line, and how messages call it.
STDIN = "-"
STDIN_NAME = "<stdin>"
#: How messages call an image read from the clipboard (``predict --clipboard``).
CLIPBOARD_NAME = "<clipboard>"
#: Ink less tall than this (pixels) is warned about: real formula images are 10-160 px tall.
MIN_INK_HEIGHT = 8
#: Text scaled below this height (pixels of model input) to fit the width limit is warned about.
MIN_SCALED_HEIGHT = 16


@dataclass
class Input:
    """One command-line image: ``image`` (dark ink on white) or ``error``; ``warnings`` either
    way. ``name`` is the path as given (``<stdin>`` for ``-``)."""

    name: str
    image: Image.Image | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def input_warnings(image: Image.Image, name: str, height: int, max_width: int) -> list[str]:
    """Why the model may read ``image`` badly at input ``height`` and ``max_width``, one line
    each: ink too small to read, or a strip so wide that it is squeezed to fit."""
    box = ink_bbox(image)
    if box is None:
        return []
    width, ink_height = box[2] - box[0], box[3] - box[1]
    found = []
    if ink_height < MIN_INK_HEIGHT:
        found.append(f"{name}: the formula is only {width}x{ink_height} pixels; the model reads "
                     f"formulas about 40 pixels tall, so expect a poor result")
    scaled = fit_size(width, ink_height, height, max_width)[1]
    if scaled < MIN_SCALED_HEIGHT and ink_height >= MIN_INK_HEIGHT:
        found.append(f"{name}: the formula ({width}x{ink_height} pixels) is so wide that it is "
                     f"shrunk to {scaled} pixels tall to fit {max_width}; crop it into parts")
    return found


def read_input(source: str | Path, height: int, max_width: int,
               stdin: BinaryIO | None = None) -> Input:
    """Load one image (``-``: all of ``stdin``, default the process's standard input)."""
    if str(source) == STDIN:
        name = STDIN_NAME
        data = (stdin or sys.stdin.buffer).read()
        if not data:
            return Input(name, error=f"{name}: empty input (0 bytes): pipe an image into it")
        source = data
    else:
        name = str(source)
    return _loaded(source, name, height, max_width)


def read_clipboard(height: int, max_width: int) -> Input:
    """The image on the system clipboard (:mod:`clipboard`), as an :class:`Input`."""
    from .clipboard import ClipboardError, read_image

    try:
        data = read_image()
    except ClipboardError as error:
        return Input(CLIPBOARD_NAME, error=str(error))
    return _loaded(data, CLIPBOARD_NAME, height, max_width)


def _loaded(source: str | Path | bytes, name: str, height: int, max_width: int) -> Input:
    try:
        image = load_image(source, name)
        crop_to_ink(image, name=name)  # a blank image cannot be read: say so now
    except ImageError as error:
        return Input(name, error=str(error))
    return Input(name, image, warnings=input_warnings(image, name, height, max_width))


def read_inputs(sources: Sequence[str | Path], height: int, max_width: int,
                stdin: BinaryIO | None = None) -> list[Input]:
    """:func:`read_input` of each source, in order; standard input may be named once."""
    if sum(str(s) == STDIN for s in sources) > 1:
        raise ValueError("standard input (-) can be read only once")
    return [read_input(s, height, max_width, stdin) for s in sources]


def figure_paths(names: Sequence[str]) -> list[Path]:
    """Where ``predict --render`` writes each image's figure: ``x.pred.png`` beside ``x.png``,
    or ``x.jpg.pred.png`` where two inputs would share that name (``x.png`` and ``x.jpg``).
    Standard input's figure is ``stdin.pred.png`` in the working folder."""
    plain = [Path("stdin.pred.png") if n == STDIN_NAME else Path(n).with_suffix(".pred.png")
             for n in names]
    return [path if plain.count(path) == 1 or name == STDIN_NAME
            else Path(name).with_name(Path(name).name + ".pred.png")
            for name, path in zip(names, plain, strict=True)]


def tsv_field(text: str) -> str:
    """``text`` safe as one field of a tab-separated line: tab, newline and carriage return
    written as ``\\t``, ``\\n`` and ``\\r``."""
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
