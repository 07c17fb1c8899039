"""LaTeX that other engines read: what pdflatex accepts but KaTeX, MathJax or a MathML converter
lack, rewritten to an equivalent where one exists.

The im2latex-100k formulas (and so the model) use plain-TeX and old-LaTeX spellings from
papers of the 1990s: ``\\sp`` for ``^``, ``{\\sl x}``, ``\\mbox``, ``\\hspace{.3truecm}``, text
letters such as ``\\o`` in math, a superscript on a space (``\\;^{*}``), ``\\label`` and
``\\nonumber`` inside the formula. :func:`portable` rewrites them token by token (the token form
in, the token form out, so :func:`formats.compact` writes it as usual); what has no
equivalent (``picture`` drawings, ``\\raise``) is left as it is. :func:`katex_errors` asks KaTeX
itself (in Node, with Debian's libjs-katex) which formulas it cannot typeset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from importlib.resources import files

from .tokenizer import tokenize

#: Commands that only affect page layout, line breaking or numbering: dropped.
DROPPED = frozenset({r"\boldmath", r"\unboldmath", r"\protect", r"\nonumber", r"\smallskip",
                     r"\medskip", r"\bigskip", r"\hfill", r"\hfil", r"\noindent", r"\*", r"\-",
                     r"\lefteqn", r"\relax"})
#: Commands dropped with their argument (a label, vertical space in a formula).
DROPPED_WITH_ARGUMENT = frozenset({r"\label", r"\vspace"})
#: Commands renamed to the spelling every engine knows.
RENAMED = {
    r"\sp": "^", r"\sb": "_",
    r"\mit": r"\it", r"\sl": r"\it",  # slanted: the nearest face the engines have
    r"\slash": "/",
    r"\fbox": r"\boxed",  # a box around math
    r"\mbox": r"\text", r"\makebox": r"\text", r"\hbox": r"\text",
    r"\emph": r"\textit",
    r"\dag": r"\dagger", r"\ddag": r"\ddagger",  # the normalizer's spellings, which MathML
    r"\vert": "|", r"\lbrace": r"\{", r"\rbrace": r"\}",  # converters do not all know
}
#: Text letters written in math: the letter itself, in text.
TEXT_LETTERS = {r"\l": "ł", r"\L": "Ł", r"\o": "ø", r"\O": "Ø", r"\ae": "æ", r"\AE": "Æ",
                r"\oe": "œ", r"\OE": "Œ", r"\ss": "ß", r"\i": "ı", r"\j": "ȷ", r"\aa": "å",
                r"\AA": "Å"}
#: Spaces a script cannot attach to in KaTeX; TeX attaches it to an empty atom, written ``{}``.
SPACES = frozenset({r"\,", r"\;", r"\:", r"\!", r"\ ", "\\", "~", r"\quad", r"\qquad"})
UNITS = ("cm", "mm", "pt", "in", "em", "ex", "bp", "pc", "dd", "cc", "sp")


def _argument_end(tokens: Sequence[str], start: int) -> int:
    """Index past the argument at ``start``: a braced group (with an optional ``*`` before it),
    or one token."""
    i = start + (start < len(tokens) and tokens[start] == "*")
    if i < len(tokens) and tokens[i] == "{":
        depth = 0
        for j in range(i, len(tokens)):
            depth += {"{": 1, "}": -1}.get(tokens[j], 0)
            if depth == 0:
                return j + 1
        return len(tokens)
    return min(i + 1, len(tokens))


def _without_true_units(tokens: list[str]) -> list[str]:
    """``. 3 t r u e c m`` -> ``. 3 c m`` (TeX's ``true`` units ignore magnification, which
    a formula never has)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        after_number = bool(out) and (out[-1].isdigit() or out[-1] == ".")
        if (after_number and tokens[i : i + 4] == ["t", "r", "u", "e"]
                and "".join(tokens[i + 4 : i + 6]) in UNITS):
            i += 4
            continue
        out.append(tokens[i])
        i += 1
    return out


def portable(formula: str) -> str:
    """The formula (token form, or any LaTeX) with what KaTeX, MathJax and MathML converters
    lack rewritten (see the tables above); the token form out."""
    tokens = _without_true_units(tokenize(formula))
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token in DROPPED:
            continue
        if token in DROPPED_WITH_ARGUMENT:
            i = _argument_end(tokens, i)
            continue
        token = RENAMED.get(token, token)
        if token in TEXT_LETTERS:
            out += [r"\text", "{", TEXT_LETTERS[token], "}"]
            continue
        if token in ("^", "_") and (not out or out[-1] in SPACES or out[-1] == "{"):
            out += ["{", "}"]
        out.append(token)
    while out and out[-1] in SPACES:  # a space at the very end typesets nothing
        out.pop()
    return " ".join(out)


class KatexUnavailable(RuntimeError):
    """Node or KaTeX is not installed."""


def katex_errors(formulas: Sequence[str], display: bool = True) -> list[str | None]:
    """KaTeX's error for each LaTeX formula (None: it typesets), from one Node process running
    the KaTeX of Debian's libjs-katex (``IMG2LATEX_KATEX_DIR`` overrides where it is).
    Raises :class:`KatexUnavailable` naming what to install."""
    from .styles.web import engine_dir

    node = shutil.which("node") or shutil.which("nodejs")
    folder = engine_dir("katex")
    if node is None or folder is None:
        lacking = [what for what, found in (("Node.js (Debian nodejs)", node),
                                            ("KaTeX (Debian libjs-katex)", folder)) if not found]
        raise KatexUnavailable(f"checking with KaTeX needs {' and '.join(lacking)}")
    script = files("img2latex_lib").joinpath("katex_check.js")
    done = subprocess.run([node, str(script), str(folder / "katex.min.js"), str(int(display))],
                          input=json.dumps(list(formulas)), capture_output=True, text=True,
                          timeout=60 + len(formulas) / 50, check=False)
    if done.returncode != 0:
        raise KatexUnavailable(f"KaTeX in Node failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)
