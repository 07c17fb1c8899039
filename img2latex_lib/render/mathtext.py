"""`MathtextRenderer`: formulas drawn by matplotlib's mathtext, which needs no TeX (the fallback
when pdflatex is missing), and `mathtext_source`, which rewrites LaTeX the way mathtext reads it.
matplotlib is imported at the first render, not with the module."""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
import weakref
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from .base import IM2LATEX_DPI, Renderer, RenderResult, finish

if TYPE_CHECKING:
    from matplotlib.mathtext import MathTextParser

_MATHTEXT_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\S")


def mathtext_source(formula: str) -> str:
    """Rewrite LaTeX for mathtext, which (unlike TeX) takes spaces in math as significant.

    Token-spaced im2latex formulas (``a ^ { 2 }``) lose their scripts in mathtext, so the spaces
    between tokens are dropped (kept only after a control word followed by a letter), and
    fractions outside scripts and other fractions become ``\\dfrac``, as LaTeX's display style.
    """
    out: list[str] = []
    display = [True]  # per open brace group: is it in display style?
    frac_args = [0]  # per open brace group: fraction arguments still to come
    previous = ""
    for token in _MATHTEXT_TOKEN.findall(formula):
        if token == "{":
            is_arg = frac_args[-1] > 0
            frac_args[-1] -= is_arg
            display.append(display[-1] and not is_arg and previous not in ("_", "^"))
            frac_args.append(0)
        elif token == "}" and len(display) > 1:
            display.pop()
            frac_args.pop()
        elif token != "}":
            frac_args[-1] = 2 if token == "\\frac" else 0
            if token == "\\frac" and display[-1] and previous not in ("_", "^"):
                token = "\\dfrac"
        if re.fullmatch(r"\\[A-Za-z]+", previous) and token[0].isalpha():
            out.append(" ")
        out.append(token)
        previous = token
    return "".join(out)


class _Collect(logging.Handler):
    """Keeps the warnings mathtext logs (a missing glyph is drawn as a dummy box)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class MathtextRenderer(Renderer):
    """Render formulas with matplotlib's mathtext only (no TeX needed), at the LaTeX glyph size.

    fonts: mathtext font sets to use ("cm", "stix", "stixsans", "dejavuserif", "dejavusans");
        with several, each formula gets one chosen deterministically from the formula and `seed`.
    Mathtext knows only part of LaTeX (no \\begin{array}, no \\big ...): such formulas, and
    formulas with glyphs a font lacks, come back as errors.
    """

    _lock = threading.Lock()

    def __init__(
        self,
        fonts: Sequence[str] = ("cm",),
        seed: int = 0,
        dpi: int = IM2LATEX_DPI,
        downsample: int = 2,
        fontsize: float = 10.0,
        workers: int = 2,
    ) -> None:
        known = ("cm", "stix", "stixsans", "dejavuserif", "dejavusans")
        unknown = [font for font in fonts if font not in known]
        if not fonts or unknown:
            raise ValueError(f"unknown mathtext fonts {unknown}: use some of {', '.join(known)}")
        self.fonts = tuple(fonts)
        self.seed = seed
        self.dpi = dpi
        self.downsample = downsample
        self.fontsize = fontsize
        self.workers = workers
        self._parser: MathTextParser | None = None
        self._pool: ProcessPoolExecutor | None = None

    def __getstate__(self) -> dict:  # worker processes build their own parser, and no pool
        return {**self.__dict__, "_parser": None, "_pool": None}

    def close(self) -> None:
        """Stop the worker processes now (they are restarted by the next large batch)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    def font_for(self, formula: str) -> str:
        """The font set used for `formula` (stable across runs and machines)."""
        return self.fonts[zlib.crc32(f"{self.seed}:{formula}".encode()) % len(self.fonts)]

    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """Render each formula; unsupported ones come back with `error` set.

        Batches of 100 or more are shared among `workers` processes (mathtext is pure Python),
        started at the first such batch and kept until the renderer is garbage-collected.
        """
        if self.workers < 2 or len(formulas) < 100:
            return [self._render_one(formula) for formula in formulas]
        with self._lock:
            if self._pool is None:  # kept for later batches: starting workers costs seconds
                context = multiprocessing.get_context("spawn")  # fork is unsafe under TF threads
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
                weakref.finalize(self, self._pool.shutdown)
        return list(self._pool.map(self._render_one, formulas, chunksize=25))

    def _render_one(self, formula: str) -> RenderResult:
        from matplotlib.font_manager import FontProperties
        from matplotlib.mathtext import MathTextParser

        source = mathtext_source(formula)
        if not source:
            return RenderResult(formula, None, "empty formula: nothing to render")
        prop = FontProperties(size=self.fontsize, math_fontfamily=self.font_for(formula))
        handler = _Collect()
        logger = logging.getLogger("matplotlib.mathtext")
        with self._lock:
            logger.addHandler(handler)
            try:
                self._parser = self._parser or MathTextParser("agg")
                parsed = self._parser.parse(f"${source}$", dpi=self.dpi, prop=prop)
            except Exception as error:  # mathtext raises ValueError and pyparsing errors
                first = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
                return RenderResult(formula, None, f"mathtext cannot render it: {first}")
            finally:
                logger.removeHandler(handler)
        if handler.messages:
            return RenderResult(formula, None, f"mathtext: {handler.messages[0]}")
        gray = 255 - np.asarray(parsed.image, dtype=np.uint8)
        image = finish(gray, self.downsample, coverage=True)
        if image is None:
            return RenderResult(formula, None, "formula renders nothing (empty image)")
        return RenderResult(formula, image, None)

