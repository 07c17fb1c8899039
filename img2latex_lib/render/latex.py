"""`LatexRenderer`: pdflatex + Ghostscript, batched and sandboxed, the im2latex-100k look.

It reproduces the processed im2latex-100k images: ``article`` at 10pt without amsmath,
``displaymath``, rasterised at 200 dpi, cropped to ink and downsampled by 2 with a Lanczos filter.
The real images were rasterised by ImageMagick (Ghostscript ``pngalpha``, 4-bit antialiasing) and
read back with the alpha channel dropped, so every pixel that a glyph touches at all is black; the
default ``raster="coverage"`` does exactly that (see ``benchmarks/render_fidelity.py``).

Many formulas go into one pdflatex run (one page each, cut to the formula by the macros below) and
one Ghostscript call; each starts from the same TeX state as if it were alone. A formula that
breaks the run is found from the log (else by a bounded bisection), and the rest re-run.
`run_command`, `parse_log` and `Run` are shared with the TeX styles (`styles.tex`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..tokenizer import to_latex
from .base import IM2LATEX_DPI, Renderer, RenderError, RenderResult, finish
from .safety import check_formula

TEMPLATES = ("im2latex", "amsmath")
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

_ESCAPED = (
    "formula breaks out of its box (closes a group it did not open, or leaves one open): it "
    "would change the formulas after it"
)


@dataclass
class Log:
    """What a pdflatex log says, by position in the compiled group."""

    shipped: list[int] = field(default_factory=list)
    errors: dict[int, list[str]] = field(default_factory=dict)
    large: set[int] = field(default_factory=set)
    too_wide: dict[int, float] = field(default_factory=dict)
    escaped: set[int] = field(default_factory=set)
    unfinished: int | None = None
    fatal: bool = False


@dataclass
class Run:
    """What one pdflatex + Ghostscript run produced; no pages and no verdict means "bisect"."""

    log: Log
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


# Re-enables SIGINT, then becomes the command (an exec keeps the process and its group).
_WITH_INTERRUPT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def _interruptible(command: list[str]) -> list[str]:
    """`command`, made to start with SIGINT at its default even where this process ignores it.

    A process started with SIGINT ignored (a background job of a script, ``nohup``) passes that
    on, and TeX then keeps ignoring it: `_stop` could only kill it, its log would end unwritten,
    and a formula that loops could not be blamed from the log (a bisection instead). A thread
    cannot safely reset a signal between fork and exec, so a small Python exec wrapper does.
    """
    if os.name != "posix" or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return command
    return [sys.executable, "-I", "-S", "-c", _WITH_INTERRUPT, *command]


def run_command(command: list[str], cwd: str, timeout: float, env: dict[str, str]) -> bool:
    """Run in its own process group; return False if it had to be stopped after `timeout` s."""
    process = subprocess.Popen(
        _interruptible(command),
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


def parse_log(text: str, nonce: str) -> Log:
    """Attribute the errors in a pdflatex log to formulas by the markers written around each.

    A fatal error counts only after the last marker, where TeX stopped: a formula that finished
    cannot fake one with ``\\typeout``.
    """
    marker = re.compile(rf"^@@@{nonce} (BEGIN|END|LARGE|ESCAPE) (\d+)$")
    log = Log()
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

    def _culprit(self, run: Run) -> tuple[int, str] | None:
        """The first formula of the run that the log blames, and why."""
        blamed = dict.fromkeys(run.log.escaped, _ESCAPED)
        if run.culprit is not None:
            blamed.setdefault(run.culprit, run.culprit_error)
        return min(blamed.items()) if blamed else None

    def _result(self, k: int, formula: str, run: Run) -> RenderResult:
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
        image = finish(page, self.downsample, self.raster == "coverage")
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

    def _compile(self, formulas: list[str]) -> Run:
        """One TeX run (`_latex_command`) and one Ghostscript run in a private temporary folder."""
        nonce = secrets.token_hex(4)
        env = {**os.environ, "openin_any": "p", "openout_any": "p", "max_print_line": "1000"}
        env.pop("TEXMFOUTPUT", None)
        with tempfile.TemporaryDirectory(prefix="img2latex-render-") as tmp:
            folder = Path(tmp)
            (folder / "doc.tex").write_text(self._document(formulas, nonce), encoding="utf-8")
            finished = run_command(self._latex_command(), tmp, self.timeout, env)
            log_file = folder / "doc.log"
            log = parse_log(log_file.read_text("latin-1") if log_file.exists() else "", nonce)
            if not finished or not (folder / "doc.pdf").exists():  # never trust a cut-off PDF
                return replace(self._blame(log, finished, log_file), timed_out=not finished)
            if log.shipped != sorted(set(log.shipped)):
                return Run(log)
            if not run_command(self._ghostscript_command(), tmp, self.timeout, env):
                return Run(log, failure=f"Ghostscript timed out after {self.timeout}s")
            files = sorted(folder.glob("page-*.pgm"))
            if len(files) != len(log.shipped):
                return Run(log)
            pages = {k: np.asarray(Image.open(f)) for k, f in zip(log.shipped, files, strict=True)}
        return Run(log, pages)

    def _latex_command(self) -> list[str]:
        """The TeX run that typesets doc.tex (pdflatex here; a style may name another engine)."""
        return ["pdflatex", "-interaction=nonstopmode", "-no-shell-escape", "doc.tex"]

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

    def _blame(self, log: Log, finished: bool, log_file: Path) -> Run:
        """pdflatex stopped without a PDF: blame the formula it was on, when the log says so."""
        if not log.fatal:
            return Run(log)
        if log.unfinished is None and not log.shipped:
            text = log_file.read_text("latin-1")
            first = next((line for line in text.splitlines() if line.startswith("! ")), "?")
            return Run(
                log, failure=f"LaTeX could not compile the {self.template} template: {first}"
            )
        if log.unfinished is None:
            return Run(log)
        if not finished:
            reason = self._timed_out()
        else:
            errors = [e for e in log.errors.get(log.unfinished, []) if "==> Fatal" not in e]
            reason = "LaTeX error: " + "; ".join(errors[:2] or ["fatal error"])
        return Run(log, culprit=log.unfinished, culprit_error=reason)

