"""The forms a prediction is given in: compact LaTeX people paste, delimiters, and MathML.

The model writes the im2latex token form, one space between tokens
(``\\frac { a } { b } + x ^ { 2 }``). :func:`compact` writes the same tokens the way people type
them (``\\frac{a}{b}+x^{2}``): a space stays only where the two tokens would otherwise read as
others (``\\alpha x``, ``- -``, a control space), so :func:`tokenizer.tokenize` of the compact
form gives the same tokens. In math mode TeX ignores spaces, so the picture is the same; in text
mode (``\\text { i f }``) the token form's spaces are typeset as word spaces and the compact form
writes the word as typed (``\\text{if}``). :func:`wrapped` adds the delimiters of a paper or a
Markdown note, :func:`mathml` converts to MathML (``latex2mathml``) for word processors and
screen readers, and :func:`forms` gives every form at once (``predict --format json``).
"""

from __future__ import annotations

import re
from itertools import pairwise

from .tokenizer import to_latex, tokenize

#: ``--wrap`` choices: the delimiters around a formula.
WRAPS = {
    "none": ("", ""),
    "inline": ("$", "$"),
    "display": ("\\[", "\\]"),
    "equation": ("\\begin{equation}\n", "\n\\end{equation}"),
}


_COMMAND = re.compile(r"\\[A-Za-z]+")


class MathMLError(ValueError):
    """A formula the MathML converter cannot convert."""


def _needs_space(left: str, right: str) -> bool:
    """Whether two pieces written together would tokenize differently from written apart."""
    return tokenize(left + right) != tokenize(left) + tokenize(right)


def compact(formula: str) -> str:
    r"""The formula (im2latex token form) without the spaces TeX does not need:
    ``\frac { a } { b }`` -> ``\frac{a}{b}``, ``\alpha x`` stays. Dimensions are written whole
    and primes glued as in :func:`tokenizer.to_latex`."""
    pieces = to_latex(formula).split()
    if not pieces:
        return ""
    out = [pieces[0]]
    for left, right in pairwise(pieces):
        if _needs_space(left, right):
            out.append(" ")
        out.append(right)
    return "".join(out)


def wrapped(latex: str, wrap: str = "none") -> str:
    """``latex`` between the delimiters of ``wrap`` (a key of :data:`WRAPS`)."""
    if wrap not in WRAPS:
        raise ValueError(f"unknown wrap {wrap!r}: use one of {', '.join(WRAPS)}")
    opening, closing = WRAPS[wrap]
    return f"{opening}{latex}{closing}"


def mathml(latex: str, display: bool = False) -> str:
    """MathML of a LaTeX formula (one line, a ``<math>`` element); :class:`MathMLError` when the
    converter cannot read it or would leave a command unconverted (as text)."""
    from latex2mathml.converter import convert

    try:
        converted = convert(latex, display="block" if display else "inline")
    except Exception as error:  # the converter raises many kinds, all meaning "cannot convert"
        reason = str(error) or type(error).__name__
        raise MathMLError(f"cannot convert to MathML: {reason}") from error
    left = _COMMAND.search(converted)
    if left:
        raise MathMLError(f"cannot convert to MathML: {left.group()} has no MathML form here")
    return converted


def forms(formula: str) -> dict[str, str | None]:
    """Every form of a predicted formula (token form in): ``latex`` (compact), ``tokens``,
    ``inline``, ``display``, ``mathml`` (None where the converter fails)."""
    latex = compact(formula)
    try:
        converted: str | None = mathml(latex)
    except MathMLError:
        converted = None
    return {"latex": latex, "tokens": to_latex(formula), "inline": wrapped(latex, "inline"),
            "display": wrapped(latex, "display"), "mathml": converted}
