"""Formula -> image: `LatexRenderer` (pdflatex + Ghostscript, batched) and `MathtextRenderer`.

`LatexRenderer` reproduces the processed im2latex-100k images: ``article`` at 10pt without amsmath,
``displaymath``, rasterised at 200 dpi, cropped to ink and downsampled by 2 with a Lanczos filter.
The real images were rasterised by ImageMagick (Ghostscript ``pngalpha``, 4-bit antialiasing) and
read back with the alpha channel dropped, so every pixel that a glyph touches at all is black; the
default ``raster="coverage"`` does exactly that (see ``benchmarks/render_fidelity.py``).

Many formulas go into one pdflatex run (one page each, cut to the formula by the macros below) and
one Ghostscript call; each starts from the same TeX state as if it were alone. A formula that
breaks the run is found from the log (else by a bounded bisection), and the rest re-run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import weakref
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .tokenizer import to_latex

if TYPE_CHECKING:
    from matplotlib.mathtext import MathTextParser

__all__ = [
    "LatexRenderer",
    "MathtextRenderer",
    "RenderError",
    "RenderResult",
    "Renderer",
    "check_formula",
    "mathtext_source",
    "default_renderer",
    "latex_available",
    "prediction_figure",
]

TEMPLATES = ("im2latex", "amsmath")
#: Rasterising resolution that, downsampled by 2, gives the im2latex-100k images their size.
IM2LATEX_DPI = 200
RASTERS = ("coverage", "antialias", "mono")
_PREAMBLE = {
    "im2latex": "\\documentclass{article}\n\\pagestyle{empty}\n",
    "amsmath": "\\documentclass{article}\n\\pagestyle{empty}\n\\usepackage{amsmath,amssymb}\n",
}
# Each formula is typeset as a real display in a vbox of the text width, as on a page of the
# document, and that vbox is shipped on a page of its own size plus a margin. (A display too wide
# for the line sticks out of the vbox; the real images are cut at its edge, so it is reported.)
# Oversized boxes ship an empty page instead, so that pages and formulas stay in step. The
# markers carry a random nonce that a formula cannot forge.
# Every formula starts from the same state: its block is a group of its own, the LaTeX counters
# (page, equation, footnote ...) are set back to their values at the start, and the internal
# macros have @ in their names (the body calls them through \csname, which a formula may not),
# so a formula can neither call them nor clear the flag that says its vbox is still open. When
# the vbox closes before the template closes it, or a group is left open when the page ships,
# the formula got out of its box (with \endgroup, an \end..., an \iffalse around a \begin ...):
# the log says ESCAPE, and the formulas after it compile again without it. The \relax after the
# vbox ends what a formula left TeX scanning; \nofiles: no .aux, whose text LaTeX would read
# back at the end. (TexRenderer keeps everything from \newbox\imgbox on.)
_SHIP_MACROS = r"""\newbox\imgbox \nofiles
\makeatletter
\newdimen\img@margin \img@margin=10pt
\newcount\img@level \newif\ifimg@open
\pdfhorigin=\img@margin \pdfvorigin=\img@margin
\def\@elt#1{\global\csname c@#1\endcsname=\the\csname c@#1\endcsname\relax}
\edef\img@counters{\cl@@ckpt}\let\@elt\relax
\def\img@begin#1{\typeout{@@@ BEGIN #1}\img@counters\xdef\img@current{#1}%
  \begingroup\global\img@level=\currentgrouplevel}
\def\img@open{\aftergroup\img@closed\global\img@opentrue}
\def\img@close{\global\img@openfalse}
\def\img@closed{\ifimg@open\typeout{@@@ ESCAPE \img@current}\fi}
\def\img@ship#1{%
  \ifnum\currentgrouplevel=\img@level\else\typeout{@@@ ESCAPE #1}\fi
  \ifdim\wd\imgbox>2800pt \setbox\imgbox\vbox{}\typeout{@@@ LARGE #1}\fi
  \ifdim\dimexpr\ht\imgbox+\dp\imgbox\relax>1400pt \setbox\imgbox\vbox{}\typeout{@@@ LARGE #1}\fi
  \pdfpagewidth=\dimexpr\wd\imgbox+2\img@margin\relax
  \pdfpageheight=\dimexpr\ht\imgbox+\dp\imgbox+2\img@margin\relax
  \shipout\box\imgbox
  \endgroup
  \typeout{@@@ END #1}}
\makeatother
"""
_FORMULA_BLOCK = (
    "\\csname img@begin\\endcsname{{{k}}}%\n"
    "\\setbox\\imgbox\\vbox{{\\csname img@open\\endcsname"
    "\\parindent=0pt\\noindent\\begin{{displaymath}}\n"
    "{formula}\n"
    "\\end{{displaymath}}\\par\\csname img@close\\endcsname}}\\relax\n"
    "\\csname img@ship\\endcsname{{{k}}}\n"
)

#: Longest formula `check_formula` accepts, in characters. The longest real formulas have about
#: 500 (im2latex-100k validation: 497; tex_formulas: 400; k12: 337); 4000 leaves eight times
#: that, while a much longer line is not a formula but a document (or an attempt to use up TeX).
MAX_FORMULA_LENGTH = 4000

# Refused control words (see `check_formula`): file, shell and terminal access; definitions and
# catcodes; and what changes TeX's state for the formulas after it in the run: global
# assignments, font parameters (always global), interaction modes (\errorstopmode makes the next
# formula's first error fatal), the page builder's registers, boxes taken out of their
# registers (\box\strutbox empties the strut of every formula after it), hyphenation,
# \partokenname, \pagenumbering, \appendix (global \gdef's of \thepage, \thesection), group
# escapes, and \makeatletter, which opens LaTeX's internals (\g@addto@macro defines globally).
_DENIED_COMMANDS = frozenset(
    """input include includeonly InputIfFileExists IfFileExists openin openout read readline write
    immediate closein closeout special catcode lccode uccode sfcode mathcode delcode csname def
    edef gdef xdef let futurelet font chardef mathchardef countdef dimendef skipdef muskipdef
    toksdef renewcommand renewenvironment providecommand loop shipout output scantokens usepackage
    documentclass par verb global globaldefs aftergroup fontdimen hyphenchar skewchar efcode lpcode
    rpcode letterspacefont batchmode nonstopmode scrollmode errorstopmode interactionmode
    deadcycles insertpenalties pagegoal pagetotal pagestretch pagefilstretch pagefillstretch
    pagefilllstretch pageshrink pagedepth prevgraf hyphenation patterns box unhbox unvbox vsplit wd
    ht dp partokenname partokencontext pagenumbering appendix bgroup egroup begingroup makeatletter
    makeatother""".split()
)
# ... and refused by how they begin: pdfTeX primitives; the \every... token lists; \new...
# (allocations and counters are global: \newcount\frac redefines \frac for every formula after
# it); \end... (internal ends of environments, \endgroup, \endinput); LaTeX's commands that
# define, hook, load or expand names (\NewDocumentCommand, \DeclareUnicodeCharacter,
# \AddToHook, \AtEndDocument, \UseName, \ExpandArgs, \ExplSyntaxOn, \RequirePackage ...).
_DENIED_PREFIX = re.compile(
    r"pdf|every|new(?!line$)|end.|Declare|Undeclare|New|Renew|Provide|Set|AddTo|RemoveFrom"
    r"|At[A-Z]|After[A-Z]|Before[A-Z]|Use[A-Z]|Expl|Expand|Raw|Load|Require|Pass|Process|Execute"
    r"|Activate|Disable|Clear|Debug|Discard|Ship|Push|Pop|Include|End[A-Z]|MakeRobust"
)
_ALLOWED_ENVIRONMENTS = frozenset(
    """array matrix pmatrix bmatrix Bmatrix vmatrix Vmatrix smallmatrix cases aligned alignedat
    gathered split subarray tabular picture eqnarray align alignat gather multline""".split()
)
_ESCAPED = (
    "formula breaks out of its box (closes a group it did not open, or leaves one open): it "
    "would change the formulas after it"
)
_CONTROL_WORD = re.compile(r"\\([A-Za-z]+)")
_ENVIRONMENT = re.compile(r"\\(begin|end)(?![A-Za-z])\s*(\{\s*([^{}]*?)\s*\})?")
_MATHTEXT_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\S")
_DISPLAY_DELIMITERS = ("\\[", "\\]", "\\(", "\\)")


class RenderError(Exception):
    """A formula could not be rendered (the message says which and why)."""


@dataclass
class RenderResult:
    """Outcome for one formula: an image, or the reason there is none.

    ``warnings`` lists LaTeX errors that TeX recovered from while still producing an image (in the
    tolerant im2latex template, e.g. an undefined ``\\operatorname`` typeset as italic letters).
    """

    formula: str
    image: Image.Image | None
    error: str | None
    warnings: tuple[str, ...] = field(default=())


def _short(formula: str, limit: int = 60) -> str:
    return formula if len(formula) <= limit else formula[: limit - 3] + "..."


def _check_braces(formula: str) -> None:
    depth = 0
    i = 0
    while i < len(formula):
        char = formula[i]
        if char == "\\":
            i += 2
            continue
        if char == "%":
            raise RenderError(f"unescaped % (a TeX comment) in formula {_short(formula)!r}")
        if char == "$":
            raise RenderError(f"$ in formula {_short(formula)!r}: it is already in math mode")
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            raise RenderError(f"unbalanced braces (a '}}' too many) in formula {_short(formula)!r}")
        i += 1
    if depth:
        raise RenderError(
            f"unbalanced braces ({depth} '{{' unclosed) in formula {_short(formula)!r}"
        )


def _check_environments(formula: str) -> None:
    stack: list[str] = []
    for match in _ENVIRONMENT.finditer(formula):
        kind, name = match.group(1), match.group(3)
        if name is None:
            raise RenderError(f"\\{kind} without {{name}} in formula {_short(formula)!r}")
        if name.rstrip("*") not in _ALLOWED_ENVIRONMENTS:
            raise RenderError(
                f"environment {{{name}}} is not allowed in formula {_short(formula)!r}"
            )
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            raise RenderError(f"\\end{{{name}}} does not match a \\begin in {_short(formula)!r}")
    if stack:
        raise RenderError(f"\\begin{{{stack[-1]}}} is never ended in formula {_short(formula)!r}")


def check_formula(formula: str) -> str:
    """Return `formula` on one line, or raise RenderError if it is empty or unsafe to compile.

    Rejected up front: formulas longer than `MAX_FORMULA_LENGTH`; file and shell access
    (``\\input``, ``\\write``, ``\\openin`` ...), new definitions (``\\def``, ``\\newcommand``,
    ``\\catcode``, ``\\csname``, ``\\UseName`` ...), pdfTeX primitives, ``^^`` character codes,
    unbalanced braces or environments, ``$``/``%`` and display delimiters; and what would change
    how the formulas after it in the same pdflatex run render (TeX keeps one state for the
    run): ``\\global``, ``\\globaldefs``, ``\\aftergroup``, the ``\\every...`` hooks, font
    parameters (``\\fontdimen``, ``\\hyphenchar``, ``\\skewchar``), ``\\new...`` allocations,
    interaction modes, the page builder's registers, ``\\box``, ``\\vsplit``, ``\\partokenname``,
    ``\\pagenumbering``, ``\\appendix``, LaTeX's hooks and declarations (``\\AtEndDocument``,
    ``\\AddToHook``, ``\\Declare...``, ``\\ExplSyntaxOn`` ...), ``\\makeatletter`` and group
    escapes (``\\egroup``, ``\\endgroup``, any ``\\end...`` word). The full lists are
    `_DENIED_COMMANDS` and `_DENIED_PREFIX`. LaTeX counters are not refused: every formula
    starts with them as they were at the start; and one that gets out of its box anyway is
    caught when it is compiled (`LatexRenderer`).
    """
    line = " ".join(formula.split())
    if not line:
        raise RenderError("empty formula: nothing to render")
    if len(line) > MAX_FORMULA_LENGTH:
        raise RenderError(
            f"formula too long: {len(line)} characters, the limit is {MAX_FORMULA_LENGTH} "
            f"({_short(line)!r})"
        )
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as error:
        message = f"formula is not valid Unicode (a lone surrogate): {_short(line)!r}"
        raise RenderError(message) from error
    if "^^" in line:
        raise RenderError(f"^^ character notation is not allowed in formula {_short(line)!r}")
    for symbol in _DISPLAY_DELIMITERS:
        if symbol in line.replace("\\\\", "  "):
            raise RenderError(f"{symbol} (a display delimiter) in formula {_short(line)!r}")
    for name in _CONTROL_WORD.findall(line.replace("\\\\", "  ")):
        if name in _DENIED_COMMANDS or _DENIED_PREFIX.match(name):
            raise RenderError(f"\\{name} is not allowed in a formula: {_short(line)!r}")
    _check_braces(line)
    _check_environments(line)
    return line


def _finish(gray: np.ndarray, downsample: int, coverage: bool) -> Image.Image | None:
    """Crop a grey raster (ink dark) to its ink, pad, and downsample like the im2latex images."""
    rows = np.flatnonzero((gray < 255).any(axis=1))
    cols = np.flatnonzero((gray < 255).any(axis=0))
    if rows.size == 0:
        return None
    ink = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if coverage:
        ink = np.where(ink < 255, 0, 255).astype(np.uint8)
    pad = 4 * downsample
    return shrink(np.pad(ink, pad, constant_values=255), downsample)


def shrink(gray: np.ndarray, factor: int, offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """Downsample a grey raster by ``factor`` (Lanczos), as the im2latex images were made.

    ``offset`` adds that many white rows and columns at the top and left first, which moves
    the ink by a fraction of an output pixel: ``offset=(1, 0)`` with ``factor=2`` gives the
    same picture half a pixel lower. The raster is padded with white to a multiple of factor.
    """
    top, left = offset
    height = -(-(gray.shape[0] + top) // factor) * factor
    width = -(-(gray.shape[1] + left) // factor) * factor
    canvas = np.full((height, width), 255, np.uint8)
    canvas[top : top + gray.shape[0], left : left + gray.shape[1]] = gray
    image = Image.fromarray(canvas)
    if factor > 1:
        image = image.resize((width // factor, height // factor), Image.Resampling.LANCZOS)
    return image


class Renderer(ABC):
    """Common interface: `render_batch` never raises for one bad formula, `render` raises."""

    @abstractmethod
    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """Render each formula; failures come back as results with `error` set."""

    def render(self, formula: str) -> Image.Image:
        """Render one formula to an "L" image (dark ink on white); raise RenderError on failure."""
        result = self.render_batch([formula])[0]
        if result.image is None:
            raise RenderError(result.error or f"formula {_short(formula)!r} did not render")
        return result.image


@dataclass
class _Log:
    """What a pdflatex log says, by position in the compiled group."""

    shipped: list[int] = field(default_factory=list)
    errors: dict[int, list[str]] = field(default_factory=dict)
    large: set[int] = field(default_factory=set)
    too_wide: dict[int, float] = field(default_factory=dict)
    escaped: set[int] = field(default_factory=set)
    unfinished: int | None = None
    fatal: bool = False


@dataclass
class _Run:
    """What one pdflatex + Ghostscript run produced; no pages and no verdict means "bisect"."""

    log: _Log
    pages: dict[int, np.ndarray] = field(default_factory=dict)
    culprit: int | None = None
    culprit_error: str = ""
    failure: str | None = None
    timed_out: bool = False


def _ghostscript() -> str | None:
    for name in ("gs", "gswin64c", "gswin32c"):
        if shutil.which(name):
            return name
    return None


def latex_available() -> bool:
    """True when pdflatex and Ghostscript are on PATH, so `LatexRenderer` can work."""
    return shutil.which("pdflatex") is not None and _ghostscript() is not None


def _stop(process: subprocess.Popen) -> None:
    """Interrupt a TeX run (it then finishes its log) and kill it if it does not stop."""
    with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
        if os.name != "posix":
            process.kill()
        else:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _run_command(command: list[str], cwd: str, timeout: float, env: dict[str, str]) -> bool:
    """Run in its own process group; return False if it had to be stopped after `timeout` s."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=os.name == "posix",
    )
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        return False
    return True


def _parse_log(text: str, nonce: str) -> _Log:
    """Attribute the errors in a pdflatex log to formulas by the markers written around each.

    A fatal error counts only after the last marker, where TeX stopped: a formula that finished
    cannot fake one with ``\\typeout``.
    """
    marker = re.compile(rf"^@@@{nonce} (BEGIN|END|LARGE|ESCAPE) (\d+)$")
    log = _Log()
    lines = text.splitlines()
    last = -1
    for i, line in enumerate(lines):
        found = marker.match(line)
        if found:
            kind, k = found.group(1), int(found.group(2))
            last = i
            if kind == "BEGIN":
                log.unfinished = k
            elif kind == "END":
                log.shipped.append(k)
                log.unfinished = None
            elif kind == "LARGE":
                log.large.add(k)
            else:
                log.escaped.add(k)
        elif line.startswith("Overfull \\hbox (") and log.unfinished is not None:
            points = float(line.split("(", 1)[1].split("pt", 1)[0])
            log.too_wide[log.unfinished] = max(points, log.too_wide.get(log.unfinished, 0.0))
        elif line.startswith("! ") and log.unfinished is not None:
            context = next((x for x in lines[i + 1 : i + 12] if re.match(r"l\.\d+ ", x)), "")
            where = re.sub(r"^l\.\d+ ", "", context).strip()[-40:]
            message = _capacity(line[2:].strip()) + (f" at: {where}" if where else "")
            log.errors.setdefault(log.unfinished, []).append(message)
    tail = "\n".join(lines[last + 1 :])
    log.fatal = any(s in tail for s in ("Emergency stop", "Fatal error", "capacity exceeded"))
    return log


def _capacity(message: str) -> str:
    """``TeX capacity exceeded, sorry [grouping levels=255].`` -> ``TeX capacity exceeded:
    grouping levels (255)``; other messages unchanged."""
    found = re.match(r"TeX capacity exceeded, sorry \[(.+?)=(\d+)\]", message)
    return f"TeX capacity exceeded: {found.group(1)} ({found.group(2)})" if found else message


def _halvings(n: int) -> int:
    """How many times `LatexRenderer` may halve a group of `n` that the log cannot explain:
    enough to find four such bad formulas by bisection."""
    return 4 * math.ceil(math.log2(n)) if n > 1 else 0


class LatexRenderer(Renderer):
    """Render formulas with pdflatex the way the processed im2latex-100k images were made.

    template: "im2latex" (article 10pt, no amsmath: the real look, also for checking pseudo-labels)
        or "amsmath" (same size, with amsmath and amssymb).
    dpi, downsample: rasterise at `dpi`, then shrink by `downsample` (Lanczos), as the real data.
    raster: "coverage" (default, matches the real images: any touched pixel is ink), "antialias"
        (plain 4-bit antialiasing, lighter strokes) or "mono" (no antialiasing).
    strict: treat every LaTeX error as a failure. Default: False for "im2latex" (errors are
        recovered like in the real data, e.g. a matrix flattened, and reported as warnings),
        True for "amsmath".
    Failures (`RenderResult.error`): unsafe input, fatal LaTeX errors, timeouts, empty renders,
    and displays wider than the 345pt line (the real images are cut off at its edge).
    timeout: seconds allowed to each pdflatex or Ghostscript run (a group of `batch_size`).
    workers: groups compiled in parallel by `render_batch`.
    screen: reject unsafe formulas up front (`check_formula`); turn off only to test the TeX
        sandbox itself (private folder, paranoid file access, no shell escape, timeout).
    """

    def __init__(
        self,
        template: str = "im2latex",
        dpi: int = IM2LATEX_DPI,
        downsample: int = 2,
        raster: str = "coverage",
        strict: bool | None = None,
        timeout: float = 20.0,
        batch_size: int = 100,
        workers: int = 2,
        screen: bool = True,
    ) -> None:
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}: use one of {', '.join(TEMPLATES)}")
        if raster not in RASTERS:
            raise ValueError(f"unknown raster {raster!r}: use one of {', '.join(RASTERS)}")
        if not latex_available():
            raise RenderError("LatexRenderer needs pdflatex and Ghostscript (gs) on PATH")
        self.template = template
        self.dpi = dpi
        self.downsample = downsample
        self.raster = raster
        self.strict = template == "amsmath" if strict is None else strict
        self.timeout = timeout
        self.batch_size = batch_size
        self.workers = workers
        self.screen = screen

    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """Render all formulas, `batch_size` per pdflatex run, `workers` runs at a time."""
        results: list[RenderResult] = [RenderResult(f, None, None) for f in formulas]
        todo: list[tuple[int, str]] = []
        for i, formula in enumerate(formulas):
            try:
                todo.append((i, check_formula(formula) if self.screen else formula))
            except RenderError as error:
                results[i].error = str(error)
        size = max(1, min(self.batch_size, math.ceil(len(todo) / max(1, self.workers))))
        groups = [todo[start : start + size] for start in range(0, len(todo), size)]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            for group, rendered in zip(groups, pool.map(self._render_group, groups), strict=True):
                for (i, _), result in zip(group, rendered, strict=True):
                    results[i] = replace(result, formula=formulas[i])
        return results

    def _render_group(self, group: list[tuple[int, str]]) -> list[RenderResult]:
        """Compile a group; isolate the formulas that break the run, in a bounded number of runs.

        A formula the log names (a fatal error or a timeout while it was typeset, or an escape
        from its box) is reported, the pages before it are kept and the others compile again
        without it: one more run per bad formula. (One named for a capacity TeX ran out of
        with other formulas before it, which may have used it up, is first compiled alone.)
        A run the log cannot explain is halved, at most `_halvings` times for the group; after
        that its formulas compile one per run. So k bad formulas in n cost O(k log n) runs,
        and never more than about 2n + 2 `_halvings(n)`.
        """
        formulas = [formula for _, formula in group]
        results: list[RenderResult | None] = [None] * len(formulas)
        todo = [list(range(len(formulas)))] if formulas else []
        halvings = _halvings(len(formulas))
        while todo:
            part = todo.pop()
            run = self._compile([formulas[i] for i in part])
            if run.failure is not None:
                for i in part:
                    results[i] = RenderResult(formulas[i], None, run.failure)
                continue
            culprit = self._culprit(run)
            if culprit is not None:
                k, error = culprit
                kept = part[:k] if run.pages else []
                for j, i in enumerate(kept):
                    results[i] = self._result(j, formulas[i], run)
                rest = part[len(kept) : k] + part[k + 1 :]
                if rest:
                    todo.append(rest)
                if k > 0 and "capacity exceeded" in error:
                    todo.append([part[k]])
                else:
                    results[part[k]] = RenderResult(formulas[part[k]], None, error)
            elif run.pages or len(part) == 1:
                for j, i in enumerate(part):
                    results[i] = self._result(j, formulas[i], run)
            elif halvings > 0:
                halvings -= 1
                todo += [part[len(part) // 2 :], part[: len(part) // 2]]
            else:
                todo += [[i] for i in reversed(part)]
        return [result for result in results if result is not None]

    def _culprit(self, run: _Run) -> tuple[int, str] | None:
        """The first formula of the run that the log blames, and why."""
        blamed = dict.fromkeys(run.log.escaped, _ESCAPED)
        if run.culprit is not None:
            blamed.setdefault(run.culprit, run.culprit_error)
        return min(blamed.items()) if blamed else None

    def _result(self, k: int, formula: str, run: _Run) -> RenderResult:
        errors = tuple(run.log.errors.get(k, ()))
        if k in run.log.large:
            return RenderResult(formula, None, "formula is too large (over 2800pt x 1400pt)")
        if k in run.log.too_wide:
            excess = run.log.too_wide[k]
            message = f"formula is {excess:.0f}pt wider than the line: the page would cut it off"
            return RenderResult(formula, None, message, errors)
        if k not in run.pages:
            if run.timed_out:
                return RenderResult(formula, None, self._timed_out())
            reason = errors[0] if errors else "no page was produced"
            return RenderResult(formula, None, f"LaTeX error: {reason}")
        if errors and self.strict:
            return RenderResult(formula, None, f"LaTeX error: {errors[0]}")
        page = run.pages[k]
        if min(page[0].min(), page[-1].min(), page[:, 0].min(), page[:, -1].min()) < 255:
            return RenderResult(
                formula, None, "ink reaches far outside the formula's box (clipped)"
            )
        image = _finish(page, self.downsample, self.raster == "coverage")
        if image is None:
            return RenderResult(formula, None, "formula renders nothing (empty image)", errors)
        return RenderResult(formula, image, None, errors)

    def _timed_out(self) -> str:
        return f"LaTeX timed out after {self.timeout:g}s (endless loop?)"

    def _document(self, formulas: list[str], nonce: str) -> str:
        macros, block = (
            text.replace("@@@", "@@@" + nonce) for text in (_SHIP_MACROS, _FORMULA_BLOCK)
        )
        blocks = "".join(block.format(k=k, formula=to_latex(f)) for k, f in enumerate(formulas))
        return f"{_PREAMBLE[self.template]}{macros}\\begin{{document}}\n{blocks}\\end{{document}}\n"

    def _compile(self, formulas: list[str]) -> _Run:
        """One pdflatex run and one Ghostscript run in a private temporary folder."""
        nonce = secrets.token_hex(4)
        env = {**os.environ, "openin_any": "p", "openout_any": "p", "max_print_line": "1000"}
        env.pop("TEXMFOUTPUT", None)
        with tempfile.TemporaryDirectory(prefix="img2latex-render-") as tmp:
            folder = Path(tmp)
            (folder / "doc.tex").write_text(self._document(formulas, nonce), encoding="utf-8")
            latex = ["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", "doc.tex"]
            finished = _run_command(latex, tmp, self.timeout, env)
            log_file = folder / "doc.log"
            log = _parse_log(log_file.read_text("latin-1") if log_file.exists() else "", nonce)
            if not finished or not (folder / "doc.pdf").exists():  # never trust a cut-off PDF
                return replace(self._blame(log, finished, log_file), timed_out=not finished)
            if log.shipped != sorted(set(log.shipped)):
                return _Run(log)
            if not _run_command(self._ghostscript_command(), tmp, self.timeout, env):
                return _Run(log, failure=f"Ghostscript timed out after {self.timeout}s")
            files = sorted(folder.glob("page-*.pgm"))
            if len(files) != len(log.shipped):
                return _Run(log)
            pages = {k: np.asarray(Image.open(f)) for k, f in zip(log.shipped, files, strict=True)}
        return _Run(log, pages)

    def _ghostscript_command(self) -> list[str]:
        """Rasterise doc.pdf to one grey PGM per page; 4-bit antialiasing unless "mono"."""
        alpha = "1" if self.raster == "mono" else "4"
        return [
            _ghostscript() or "gs",
            "-q",
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            "-sDEVICE=pgmraw",
            f"-r{self.dpi}",
            f"-dTextAlphaBits={alpha}",
            f"-dGraphicsAlphaBits={alpha}",
            "-sOutputFile=page-%05d.pgm",
            "doc.pdf",
        ]

    def _blame(self, log: _Log, finished: bool, log_file: Path) -> _Run:
        """pdflatex stopped without a PDF: blame the formula it was on, when the log says so."""
        if not log.fatal:
            return _Run(log)
        if log.unfinished is None and not log.shipped:
            text = log_file.read_text("latin-1")
            first = next((line for line in text.splitlines() if line.startswith("! ")), "?")
            return _Run(
                log, failure=f"LaTeX could not compile the {self.template} template: {first}"
            )
        if log.unfinished is None:
            return _Run(log)
        if not finished:
            reason = self._timed_out()
        else:
            errors = [e for e in log.errors.get(log.unfinished, []) if "==> Fatal" not in e]
            reason = "LaTeX error: " + "; ".join(errors[:2] or ["fatal error"])
        return _Run(log, culprit=log.unfinished, culprit_error=reason)


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
        image = _finish(gray, self.downsample, coverage=True)
        if image is None:
            return RenderResult(formula, None, "formula renders nothing (empty image)")
        return RenderResult(formula, image, None)


def default_renderer(dpi: int = IM2LATEX_DPI) -> Renderer:
    """A `LatexRenderer` (im2latex template) when pdflatex and gs exist, else `MathtextRenderer`;
    ``dpi`` above `IM2LATEX_DPI` renders larger than the im2latex images."""
    if latex_available():
        return LatexRenderer(dpi=dpi)
    return MathtextRenderer(dpi=dpi)


def prediction_figure(image, latex: str, renderer: Renderer | None = None):
    """A matplotlib figure: the input image above the rendered prediction (or why it failed)."""
    import matplotlib.pyplot as plt

    from .preprocess import load_image

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
