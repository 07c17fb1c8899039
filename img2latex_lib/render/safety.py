"""The formula safety check: `check_formula` refuses, before pdflatex sees it, a formula that
could read or write files, define commands, or change how the formulas after it in the same
pdflatex run render (the denied-command lists, the brace and environment checks)."""

from __future__ import annotations

import re

from .base import RenderError, shorten

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
_CONTROL_WORD = re.compile(r"\\([A-Za-z]+)")
_ENVIRONMENT = re.compile(r"\\(begin|end)(?![A-Za-z])\s*(\{\s*([^{}]*?)\s*\})?")
_DISPLAY_DELIMITERS = ("\\[", "\\]", "\\(", "\\)")


def _check_braces(formula: str) -> None:
    depth = 0
    i = 0
    while i < len(formula):
        char = formula[i]
        if char == "\\":
            i += 2
            continue
        if char == "%":
            raise RenderError(f"unescaped % (a TeX comment) in formula {shorten(formula)!r}")
        if char == "$":
            raise RenderError(f"$ in formula {shorten(formula)!r}: it is already in math mode")
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            raise RenderError(
                f"unbalanced braces (a '}}' too many) in formula {shorten(formula)!r}"
            )
        i += 1
    if depth:
        raise RenderError(
            f"unbalanced braces ({depth} '{{' unclosed) in formula {shorten(formula)!r}"
        )


def _check_environments(formula: str) -> None:
    stack: list[str] = []
    for match in _ENVIRONMENT.finditer(formula):
        kind, name = match.group(1), match.group(3)
        if name is None:
            raise RenderError(f"\\{kind} without {{name}} in formula {shorten(formula)!r}")
        if name.rstrip("*") not in _ALLOWED_ENVIRONMENTS:
            raise RenderError(
                f"environment {{{name}}} is not allowed in formula {shorten(formula)!r}"
            )
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            raise RenderError(f"\\end{{{name}}} does not match a \\begin in {shorten(formula)!r}")
    if stack:
        raise RenderError(f"\\begin{{{stack[-1]}}} is never ended in formula {shorten(formula)!r}")


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
            f"({shorten(line)!r})"
        )
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as error:
        message = f"formula is not valid Unicode (a lone surrogate): {shorten(line)!r}"
        raise RenderError(message) from error
    if "^^" in line:
        raise RenderError(f"^^ character notation is not allowed in formula {shorten(line)!r}")
    for symbol in _DISPLAY_DELIMITERS:
        if symbol in line.replace("\\\\", "  "):
            raise RenderError(f"{symbol} (a display delimiter) in formula {shorten(line)!r}")
    for name in _CONTROL_WORD.findall(line.replace("\\\\", "  ")):
        if name in _DENIED_COMMANDS or _DENIED_PREFIX.match(name):
            raise RenderError(f"\\{name} is not allowed in a formula: {shorten(line)!r}")
    _check_braces(line)
    _check_environments(line)
    return line

