"""How wide a formula will typeset: an estimate in pt, so the generator can draw again the
formulas that would not fit the im2latex page."""

from __future__ import annotations

from collections.abc import Sequence

from ..tokenizer import ARITY, _atom_end, _group_end
from .grammar import CATEGORY_OF, LEFT_TOKENS, RIGHT_TOKENS, SCRIPTS, argument_span, closing_index

#: Widest formula kept: the im2latex page cuts displays at its 345pt line, and the estimate
#: (:func:`estimate_width`) is within -3 % .. +19 % of the rendered width (measured on 389
#: formulas).
MAX_WIDTH_PT = 285.0

#: Approximate widths in pt at 10pt (operators and relations with their spacing).
_LEAF_WIDTH = {
    "latin": 5.5,
    "digit": 5.0,
    "greek": 6.0,
    "symbol": 6.0,
    "dots": 13.0,
    "binop": 12.0,
    "relation": 13.0,
    "punct": 4.5,
    "bigop": 12.0,
}
_SPACE_WIDTH = {
    r"\,": 1.7,
    r"\:": 2.2,
    r"\;": 2.8,
    r"\!": -1.7,
    r"\quad": 10.0,
    r"\qquad": 20.0,
    "~": 3.3,
    "\\": 3.3,
}


def estimate_width(
    tokens: Sequence[str], i: int = 0, end: int | None = None, scale: float = 1.0
) -> float:
    """Estimated typeset width (pt) of ``tokens[i:end]`` in a display: scripts at 70 %, a
    fraction as wide as its wider part, an array as its widest cells, column by column."""
    end = len(tokens) if end is None else end
    width = 0.0
    while i < end:
        token, cat = tokens[i], CATEGORY_OF.get(tokens[i])
        if token in SCRIPTS:  # a subscript and a superscript stack: the wider one counts
            parts = []
            while i < end and tokens[i] in SCRIPTS:
                first, last, i = argument_span(tokens, i + 1)
                parts.append(estimate_width(tokens, first, last, 0.7 * scale))
            width += max(parts)
        elif cat in _LEAF_WIDTH or cat == "space":
            width += scale * (_LEAF_WIDTH.get(cat) or _SPACE_WIDTH[token])
            i += 1
        elif token == r"\frac":
            first, last, after = argument_span(tokens, i + 1)
            top = estimate_width(tokens, first, last, scale)
            first, last, i = argument_span(tokens, after)
            width += max(top, estimate_width(tokens, first, last, scale)) + 2 * scale
        elif (
            token == r"\begin{array}"
            and (close := closing_index(tokens, i, end, {r"\begin{array}"}, {r"\end{array}"})) > 0
        ):
            width += _array_width(tokens, _group_end(tokens, i + 1), close, scale)
            i = close + 1
        elif (
            token in LEFT_TOKENS
            and (close := closing_index(tokens, i, end, LEFT_TOKENS, RIGHT_TOKENS)) > 0
        ):
            width += estimate_width(tokens, i + 1, close, scale) + 9 * scale
            i = close + 1
        elif token == "{" or token in ARITY or token == r"\sqrt":  # a group, a command's args
            after = _atom_end(tokens, i)
            inner = (i + 1, after - 1) if token == "{" else (i + 1, after)
            width += estimate_width(tokens, *inner, scale) + (9 * scale if token == r"\sqrt" else 0)
            i = after
        else:  # delimiters, \\ and anything else: about one character
            width += 0 if token in ("}", "&", r"\\") else 4.5 * scale
            i += 1
    return width


def _array_width(tokens: Sequence[str], i: int, end: int, scale: float) -> float:
    """Width of array cells ``tokens[i:end]``: the widest cell of each column, plus padding."""
    columns: dict[int, float] = {}
    column, start = 0, i
    while i <= end:
        if i == end or tokens[i] in ("&", r"\\"):
            columns[column] = max(columns.get(column, 0.0), estimate_width(tokens, start, i, scale))
            column = 0 if i < end and tokens[i] == r"\\" else column + 1
            start = i = i + 1
        else:
            i = _group_end(tokens, i) if tokens[i] == "{" else i + 1
    return sum(columns.values()) + 10 * scale * len(columns)
