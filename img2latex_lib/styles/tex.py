"""TeX styles: pdflatex with the math font packages of TeX Live's recommended sets, and LuaLaTeX
with ``unicode-math`` and an OpenType math font (Latin Modern Math, TeX Gyre, STIX, Asana).

`TexRenderer` is `LatexRenderer` (batches, sandbox, log parsing, bisection) with a preamble and an
engine of its own; its document is `LatexRenderer`'s with the preamble swapped.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..render import LatexRenderer, Renderer, RenderError, RenderResult, latex_available
from .raster import RasterRenderer
from .spec import Style

__all__ = ["OPENTYPE_FONTS", "PDFLATEX_FACES", "TexRenderer", "tex_missing", "tex_renderer"]


@dataclass(frozen=True)
class Face:
    """A pdflatex math face: the preamble lines that select it and the files they need."""

    preamble: str
    needs: tuple[str, ...]
    debian: str = "texlive-latex-recommended"


#: pdflatex faces: key -> preamble and the .sty files it needs (all in setup.sh's TeX packages
#: except ``lmodern``, Debian package ``lmodern``). Not in them, so not offered: fourier,
#: eulervm, newtxmath, newpxmath, mathdesign, kpfonts, stix2 (Debian texlive-fonts-extra).
PDFLATEX_FACES: dict[str, Face] = {
    "cm": Face("\\usepackage{amsmath,amssymb}\n", ("amsmath.sty", "amssymb.sty")),
    "lmodern": Face(
        "\\usepackage{amsmath,amssymb}\n\\usepackage[T1]{fontenc}\n\\usepackage{lmodern}\n",
        ("amsmath.sty", "amssymb.sty", "lmodern.sty"),
        "lmodern",
    ),
    "times": Face(
        "\\usepackage{amsmath,amssymb}\n\\usepackage{mathptmx}\n",
        ("amsmath.sty", "amssymb.sty", "mathptmx.sty"),
        "texlive-fonts-recommended",
    ),
    "txfonts": Face(
        "\\usepackage{amsmath,amssymb}\n\\usepackage{txfonts}\n",
        ("amsmath.sty", "amssymb.sty", "txfonts.sty"),
        "texlive-fonts-recommended",
    ),
    "palatino": Face(
        "\\usepackage{amsmath,amssymb}\n\\usepackage[sc]{mathpazo}\n",
        ("amsmath.sty", "amssymb.sty", "mathpazo.sty"),
        "texlive-fonts-recommended",
    ),
    "pxfonts": Face(
        "\\usepackage{amsmath,amssymb}\n\\usepackage{pxfonts}\n",
        ("amsmath.sty", "amssymb.sty", "pxfonts.sty"),
        "texlive-fonts-recommended",
    ),
    "euler": Face(
        "\\usepackage{amsmath,amssymb}\n\\usepackage[mathcal]{euler}\n",
        ("amsmath.sty", "amssymb.sty", "euler.sty"),
    ),
    "sans": Face(
        "\\usepackage{amsmath,amssymb}\n\\usepackage{sansmath}\n\\sansmath\n"
        "\\renewcommand\\familydefault{\\sfdefault}\n",
        ("amsmath.sty", "amssymb.sty", "sansmath.sty"),
    ),
}

#: OpenType math fonts for LuaLaTeX: file -> Debian package that has it. The text of ``\text``
#: and operator names is set in the math font too, so the whole formula is one design.
OPENTYPE_FONTS: dict[str, str] = {
    "latinmodern-math.otf": "fonts-lmodern",
    "texgyretermes-math.otf": "fonts-texgyre-math",
    "texgyrepagella-math.otf": "fonts-texgyre-math",
    "texgyrebonum-math.otf": "fonts-texgyre-math",
    "texgyreschola-math.otf": "fonts-texgyre-math",
    "texgyredejavu-math.otf": "fonts-texgyre-math",
    "Asana-Math.otf": "fonts-oflb-asana-math",
    "STIXTwoMath-Regular.otf": "texlive-fonts-extra, a 510 MB download",
    "LibertinusMath-Regular.otf": "texlive-fonts-extra, a 510 MB download",
}
_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/share/texmf/fonts"),
              Path("/usr/share/texlive/texmf-dist/fonts"), Path("/usr/local/share/fonts"))

# Control words that reach Lua, load fonts, or change how the rest is read (catcodes, new
# commands), refused in LuaLaTeX styles on top of `check_formula`: Lua can write anywhere.
_LUA_DENIED = re.compile(
    r"^(lua|directlua|latelua|begincsname|lastnamedcs|scantextokens|Ucharcat|primitive|"
    r"makeat|ExplSyntax|(New|Renew|Provide|Declare)(Expandable)?DocumentCommand|"
    r"NewCommandCopy|set(main|sans|mono|math|boldmath|operator)|fontspec|newfont|"
    r"defaultfontfeatures|addfontfeatures|unimathsetup|AddToHook|UseHook)"
)
_CONTROL_WORD = re.compile(r"\\([A-Za-z]+)")
# After the fonts are loaded, Lua loses what could touch files outside the folder or run code.
# (TeX reads this as a macro argument: no %, #, ~ or backslash in the Lua.)
_LUA_HARDEN = r"""\AddToHook{begindocument/end}{%
\sbox0{$\displaystyle x^{x^{x}}_{x_{x}}\mathbf{x}\mathrm{x}\text{x}$}%
\directlua{
local open = io.open
io.open = function(name, mode)
  local writes = mode and (string.find(mode, "w", 1, true) or string.find(mode, "a", 1, true)
      or string.find(mode, "+", 1, true))
  if writes and (string.sub(name, 1, 1) == "/" or string.find(name, "..", 1, true)) then
    return nil, "denied" end
  return open(name, mode) end
os.execute, os.exec, os.spawn, os.remove, os.rename = nil, nil, nil, nil, nil
os.setenv, os.tmpdir, io.popen, io.output, package.loadlib = nil, nil, nil, nil, nil
if lfs then lfs.rmdir, lfs.mkdir, lfs.chdir, lfs.touch, lfs.link = nil, nil, nil, nil, nil end
if debug then debug.getupvalue, debug.setupvalue, debug.getlocal = nil, nil, nil end
ffi = nil}}
"""


#: TeX files the styles check for (looked up together, once: one kpsewhich run, not one each).
_LUA_NEEDS = ("luaotfload.sty", "unicode-math.sty", "luatex85.sty")


@functools.cache
def _tex_files() -> dict[str, str]:
    """Where TeX finds each file a style may need (absent ones left out), from one kpsewhich run."""
    return {Path(line).name: line
            for line in _kpsewhich_run(sorted(_known_names())).splitlines() if line}


def _kpsewhich_run(names: list[str]) -> str:
    """kpsewhich's output for ``names`` (the path of each one found, a line each), or ""."""
    if shutil.which("kpsewhich") is None:
        return ""
    try:
        out = subprocess.run(["kpsewhich", *names], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout


def kpsewhich(name: str) -> str | None:
    """Where TeX finds `name` (a .sty or font file), or None."""
    known = _tex_files()
    if name in known:
        return known[name]
    return None if name in _known_names() else (_kpsewhich_run([name]).strip() or None)


@functools.cache
def _known_names() -> frozenset[str]:
    """Every TeX file name a style checks for."""
    return frozenset({name for face in PDFLATEX_FACES.values() for name in face.needs}
                     | {"extarticle.cls", *_LUA_NEEDS, *OPENTYPE_FONTS})


@functools.cache
def find_font(file: str) -> Path | None:
    """The path of an OpenType font file, searched in TeX's trees and the system font folders."""
    found = kpsewhich(file)
    if found:
        return Path(found)
    for folder in _FONT_DIRS:
        if folder.is_dir():
            for path in folder.rglob(file):
                return path
    return None


def _document_class(size: float) -> str:
    if size in (10, 11, 12):
        return f"\\documentclass[{size:g}pt]{{article}}\n"
    if size in (8, 9, 14, 17, 20):
        return f"\\documentclass[{size:g}pt]{{extarticle}}\n"
    raise ValueError(f"TeX styles come in 8, 9, 10, 11, 12, 14, 17 or 20 pt, not {size:g}")


def _wide() -> str:
    # A wider line than article's (345pt at 10pt), so a formula that fits im2latex's 10pt line
    # also fits at 12pt; images are cut to the ink anyway.
    return "\\setlength\\textwidth{500pt}\n\\pagestyle{empty}\n\\tracinglostchars=3\n"


def preamble(style: Style) -> str:
    """The preamble of a pdflatex or LuaLaTeX style (document class to before ``\\begin``)."""
    head = _document_class(style.size)
    if style.engine == "pdflatex":
        return head + PDFLATEX_FACES[style.font].preamble + _wide()
    path = find_font(style.font)
    where = f"[Path={path.parent}/]" if path is not None else ""
    return (
        head + "\\usepackage{luatex85}\n\\usepackage{amsmath}\n"
        "\\usepackage[mathrm=sym,mathit=sym,mathbf=sym,mathsf=sym]{unicode-math}\n"
        f"\\setmainfont{{{style.font}}}{where}\n\\setmathfont{{{style.font}}}{where}\n"
        + _wide() + _LUA_HARDEN
    )


def tex_missing(style: Style) -> str | None:
    """Why `style` (a pdflatex or lualatex one) cannot render here, or None if it can."""
    if style.engine == "pdflatex":
        if not latex_available():
            return "needs pdflatex and Ghostscript (Debian texlive-latex-base, ghostscript)"
        if style.font == "im2latex":
            return None
        face = PDFLATEX_FACES[style.font]
        lacking = [name for name in face.needs if kpsewhich(name) is None]
        if style.size not in (10, 11, 12) and kpsewhich("extarticle.cls") is None:
            lacking.append("extarticle.cls")
        if lacking:
            return f"needs {', '.join(lacking)} (Debian {face.debian})"
        return None
    if shutil.which("lualatex") is None or shutil.which("gs") is None:
        return "needs lualatex and Ghostscript (Debian texlive-luatex, ghostscript)"
    lacking = [name for name in _LUA_NEEDS if kpsewhich(name) is None]
    if lacking:
        return f"needs {', '.join(lacking)} (Debian texlive-luatex, texlive-latex-recommended)"
    if find_font(style.font) is None:
        package = OPENTYPE_FONTS.get(style.font, "a package that has it")
        return f"needs the font {style.font} (Debian {package}), not installed"
    return None


class TexRenderer(LatexRenderer):
    """`LatexRenderer` with its own preamble and engine ("pdflatex" or "lualatex").

    Everything else is `LatexRenderer`'s: batches of `batch_size` per run, the private folder
    and paranoid file access, the screen (`check_formula`, plus Lua and font commands for
    LuaLaTeX), failures found from the log and reported per formula. ``strict`` defaults to True:
    any LaTeX error, a glyph the font lacks included, fails the formula.
    """

    def __init__(self, preamble_text: str, engine: str = "pdflatex", *, dpi: int = 200,
                 downsample: int = 2, raster: str = "antialias", strict: bool = True,
                 timeout: float = 30.0, batch_size: int = 50, workers: int = 2) -> None:
        if engine not in ("pdflatex", "lualatex"):
            raise ValueError(f"engine {engine!r}: use pdflatex or lualatex")
        if shutil.which(engine) is None:
            raise RenderError(f"the {engine} style needs {engine} on PATH")
        super().__init__(template="amsmath", dpi=dpi, downsample=downsample, raster=raster,
                         strict=strict, timeout=timeout, batch_size=batch_size,
                         workers=workers, screen=True)
        self.preamble_text = preamble_text
        self.engine = engine

    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]:
        """As `LatexRenderer.render_batch`; LuaLaTeX also refuses Lua and font commands."""
        if self.engine != "lualatex":
            return super().render_batch(formulas)
        denied = {}
        for i, formula in enumerate(formulas):
            names = [n for n in _CONTROL_WORD.findall(formula) if _LUA_DENIED.match(n)]
            if names:
                denied[i] = f"\\{names[0]} is not allowed in a formula: {formula[:60]!r}"
        todo = [f for i, f in enumerate(formulas) if i not in denied]
        done = iter(super().render_batch(todo))
        return [RenderResult(f, None, denied[i]) if i in denied else next(done)
                for i, f in enumerate(formulas)]

    def _document(self, formulas: list[str], nonce: str) -> str:
        document = super()._document(formulas, nonce)
        start = document.find("\\newbox\\imgbox")
        if start < 0:  # LatexRenderer's document changed shape: say so rather than guess
            raise RenderError("TexRenderer cannot find LatexRenderer's page macros to keep")
        return self.preamble_text + document[start:]

    def _latex_command(self) -> list[str]:
        """`engine` in place of pdflatex (LuaLaTeX without its socket library)."""
        command = [self.engine, "-interaction=nonstopmode", "-no-shell-escape", "doc.tex"]
        if self.engine == "lualatex":
            command.insert(1, "--nosocket")
        return command


def _oversample(dpi: int, mode: str) -> int:
    """Rasterise at twice the dpi and shrink, as im2latex did, below 200 dpi (smoother edges)
    and for "coverage" (whose touched pixels are meant at twice the final resolution)."""
    return 2 if dpi < 200 or mode == "coverage" else 1


def tex_renderer(style: Style, workers: int = 2) -> Renderer:
    """A renderer for a pdflatex or lualatex style; the `im2latex` style is `LatexRenderer()`."""
    reason = tex_missing(style)
    if reason is not None:
        raise RenderError(f"style {style.name!r} {reason}")
    raster = style.raster
    factor = _oversample(raster.dpi, raster.mode)
    if style.font == "im2latex":
        if raster.dpi == 100 and raster.mode == "coverage" and raster.plain and raster.margin == 4:
            return LatexRenderer(workers=workers)
        base: Renderer = LatexRenderer(dpi=raster.dpi * factor, downsample=factor,
                                       raster=raster.mode, workers=workers)
    else:
        base = TexRenderer(preamble(style), style.engine, dpi=raster.dpi * factor,
                           downsample=factor, raster=raster.mode, workers=workers)
    return RasterRenderer(base, raster)
