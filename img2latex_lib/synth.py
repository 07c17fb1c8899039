"""Random formula generator whose weights are fitted to real im2latex-100k formulas.

A small grammar writes formulas the way the normalized im2latex-100k formulas look: sums and
relations of terms, fractions, sub- and superscripts, roots, big operators with limits,
``\\left ... \\right`` pairs, arrays, accents, fonts, function names, words, spacing and
punctuation. Every choice follows statistics measured on real formulas (:func:`fit_statistics`):

- how long formulas are, and fractions, scripts, parentheses, array cells...; a formula draws its
  length first and every part gets the room that is left (so lengths match the real ones);
- which kind of item (letter, fraction, root, ...) starts, and which scripts follow an item, in
  each context (top level, subscript, superscript, argument, array cell) with as many tokens
  left in the group as there (so ``\\frac { 1 } { m ^ { 2 } }`` fills its room like real ones);
- which tokens fill each role in each context, and how often a formula repeats its letters;
- at top level, weights fitted by simulation so that generated formulas have as many fractions,
  scripts, relations... as real ones, and a per-formula spread, fitted to the share of formulas
  that have each structure (real structures cluster: one fraction often comes with several).

Output is normalized, space-separated tokens (``normalize(f) == f``) that compile with pdflatex in
the im2latex template (article, no amsmath): function names are written ``\\mathrm { s i n }``
(im2latex writes ``\\operatorname``, which needs amsmath) and matrices as ``array``.

Fit the statistics shipped with the package (lines before :data:`DEV_TEST_START` only)::

    python -m img2latex_lib.synth fit data/im2latex100k_val/formulas.norm.lst
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from .tokenizer import (
    ARITY,
    LIMIT_OPERATORS,
    MAX_LEN,
    OPERATORS,
    _atom_end,
    _group_end,
    normalize,
    tokenize,
)

STATS_FILE = "synth_stats.json"
STATS_VERSION = 1
#: Lines of the im2latex-100k val formulas from this index on are the held-out dev-test set.
DEV_TEST_START = 7475
#: normalize() spells ``\sin`` as im2latex does, ``\operatorname { s i n }``, which needs amsmath
#: (absent from the im2latex template); ``\mathrm { s i n }`` gives the same upright letters.
FUNCTION_COMMAND = r"\mathrm"
MAX_DEPTH = 5
#: Fitted top-level weights stay within [1/MAX_FACTOR, MAX_FACTOR] of the counted distributions.
MAX_FACTOR = 20.0
#: Widest formula kept: the im2latex page cuts displays at its 345pt line, and the estimate
#: (:func:`_width`) is within -3 % .. +19 % of the rendered width (measured on 389 formulas).
MAX_WIDTH_PT = 285.0
#: Formula lengths are corrected in bins of this many tokens for the too wide ones drawn again.
LENGTH_BIN = 10
#: Where an item stands: top level (and inside delimiters), subscript, superscript, argument of
#: a fraction, root, accent or font, array cell.
CONTEXTS = ("main", "sub", "sup", "arg", "cell")

# --- token tables -----------------------------------------------------------------------------
# Only tokens that compile in LaTeX's article class without extra packages.

CATEGORIES: dict[str, tuple[str, ...]] = {
    name: tuple(tokens.split())
    for name, tokens in {
        "latin": " ".join("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        "digit": " ".join("0123456789"),
        "greek": r"""\alpha \beta \gamma \delta \epsilon \varepsilon \zeta \eta \theta \vartheta
            \iota \kappa \lambda \mu \nu \xi \pi \varpi \rho \varrho \sigma \varsigma \tau
            \upsilon \phi \varphi \chi \psi \omega \Gamma \Delta \Theta \Lambda \Xi \Pi \Sigma
            \Upsilon \Phi \Psi \Omega""",
        "symbol": r"""\partial \infty \nabla \hbar \ell \prime \dag \imath \jmath \wp \Re \Im
            \aleph \emptyset \forall \exists \neg \bot \top \triangle \angle \surd \flat \sharp
            \natural""",
        "dots": r"\cdots \ldots \dots \vdots \ddots",
        "binop": r"""+ - * / \pm \mp \cdot \times \otimes \oplus \ominus \odot \wedge \vee
            \circ \ast \star \bullet \cap \cup \setminus \div \triangleright \triangleleft
            \bigtriangleup \bigtriangledown \bigcirc""",
        "relation": r"""= < > \equiv \leq \geq \neq \sim \simeq \approx \to \propto \in \ni
            \subset \supset \subseteq \supseteq \perp \mid \parallel \longrightarrow \leftarrow
            \leftrightarrow \Rightarrow \Leftarrow \Leftrightarrow \Longrightarrow
            \Longleftrightarrow \longleftrightarrow \mapsto \longmapsto \gg \ll \cong \doteq
            \vdash \asymp \uparrow \downarrow \hookrightarrow \rightharpoonup \searrow \swarrow""",
        "punct": ", . ; : !",  # not ': after a superscript it makes a double superscript
        "space": r"\, \; \: \! \quad \qquad ~",  # and a control space, added below
        "bigop": r"""\sum \int \prod \oint \coprod \bigcup \bigcap \bigotimes \bigoplus
            \bigwedge \bigvee \bigsqcup \smallint""",
        "accent": r"""\bar \hat \tilde \vec \dot \ddot \check \breve \acute \grave \overline
            \underline \widetilde \widehat \overrightarrow \overleftarrow \overbrace
            \underbrace""",
        "font": r"\mathrm \mathcal \mathbf \mathsf \mathit \mathtt",
    }.items()
}
CATEGORIES["space"] += ("\\",)
CATEGORY_OF = {token: cat for cat, tokens in CATEGORIES.items() for token in tokens}
#: Function names (``\\sin``), which im2latex spells ``\\operatorname { s i n }``.
FUNCTION_NAMES = OPERATORS | LIMIT_OPERATORS
WORD_COMMANDS = (r"\mathrm", r"\textrm")
OPERATOR_COMMANDS = (r"\operatorname", r"\operatorname*")
PLAIN_PAIRS = {"(": ")", "[": "]", r"\{": r"\}", r"\langle": r"\rangle", "|": "|", r"\|": r"\|"}
LEFT_DELIMITERS = ("(", "[", r"\{", "|", ".", r"\langle", r"\|", "/")
RIGHT_DELIMITERS = (")", "]", r"\}", "|", ".", r"\rangle", r"\|", "/")
LEFT_TOKENS = frozenset(r"\left" + d for d in LEFT_DELIMITERS)
RIGHT_TOKENS = frozenset(r"\right" + d for d in RIGHT_DELIMITERS)
SCRIPTS = ("_", "^")
SCRIPT_CONTEXT = {"_": "sub", "^": "sup"}

#: Structures the generator chooses between, with the fewest tokens each can take.
KIND_COST = {
    "latin": 1,
    "greek": 1,
    "number": 1,
    "symbol": 1,
    "dots": 1,
    "frac": 7,
    "sqrt": 4,
    "paren": 3,
    "left": 3,
    "bigop": 2,
    "accent": 4,
    "font": 4,
    "function": 6,
    "word": 5,
    "group": 4,
    "array": 9,
}
LEAF_KINDS = ("latin", "greek", "symbol", "dots")
BEFORE_OPERAND = ("bigop", "function")  # items that an operand follows without a connector
#: Leaves that a formula tends to repeat (the same variables come back), and the pool of
#: earlier leaves each context reuses from.
REUSED = ("latin", "greek", "symbol")
REUSE_POOL = {"main": "main", "arg": "main", "cell": "main", "sub": "sub", "sup": "sup"}
CONNECTORS = ("binop", "relation", "punct", "space")
SCRIPTABLE = frozenset(
    "latin greek number symbol paren left accent font function word group".split()
)
#: What the fitted top-level weights and per-formula spreads act on.
KNOBS = (*KIND_COST, *CONNECTORS, *SCRIPTS)


def _content(tokens: Sequence[str], start: int) -> tuple[int, int, int]:
    """(first, end, next) of the argument at ``start``: inside its braces if it is a group."""
    if start < len(tokens) and tokens[start] == "{":
        end = _group_end(tokens, start)
        return start + 1, end - 1, end
    end = _atom_end(tokens, start)
    return start, end, end


def _matching(tokens: Sequence[str], start: int, end: int, opens, closes) -> int:
    """Index of the token that closes the one at ``start`` (nesting counted, groups skipped)."""
    depth = 1
    i = start + 1
    while i < end:
        token = tokens[i]
        if token in closes:
            depth -= 1
            if depth == 0:
                return i
        elif token in opens:
            depth += 1
        i = _group_end(tokens, i) if token == "{" else i + 1
    return -1


def _letters(tokens: Sequence[str]) -> str | None:
    """``s i n`` -> ``sin`` when every token is one ASCII letter and there are at least two."""
    if len(tokens) >= 2 and all(len(t) == 1 and t.isascii() and t.isalpha() for t in tokens):
        return "".join(tokens)
    return None


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


def _width(tokens: Sequence[str], i: int = 0, end: int | None = None, scale: float = 1.0) -> float:
    """Estimated typeset width (pt) of ``tokens[i:end]`` in a display: scripts at 70 %, a
    fraction as wide as its wider part, an array as its widest cells, column by column."""
    end = len(tokens) if end is None else end
    width = 0.0
    while i < end:
        token, cat = tokens[i], CATEGORY_OF.get(tokens[i])
        if token in SCRIPTS:  # a subscript and a superscript stack: the wider one counts
            parts = []
            while i < end and tokens[i] in SCRIPTS:
                first, last, i = _content(tokens, i + 1)
                parts.append(_width(tokens, first, last, 0.7 * scale))
            width += max(parts)
        elif cat in _LEAF_WIDTH or cat == "space":
            width += scale * (_LEAF_WIDTH.get(cat) or _SPACE_WIDTH[token])
            i += 1
        elif token == r"\frac":
            first, last, after = _content(tokens, i + 1)
            top = _width(tokens, first, last, scale)
            first, last, i = _content(tokens, after)
            width += max(top, _width(tokens, first, last, scale)) + 2 * scale
        elif (
            token == r"\begin{array}"
            and (close := _matching(tokens, i, end, {r"\begin{array}"}, {r"\end{array}"})) > 0
        ):
            width += _array_width(tokens, _group_end(tokens, i + 1), close, scale)
            i = close + 1
        elif (
            token in LEFT_TOKENS
            and (close := _matching(tokens, i, end, LEFT_TOKENS, RIGHT_TOKENS)) > 0
        ):
            width += _width(tokens, i + 1, close, scale) + 9 * scale
            i = close + 1
        elif token == "{" or token in ARITY or token == r"\sqrt":  # a group, a command's args
            after = _atom_end(tokens, i)
            inner = (i + 1, after - 1) if token == "{" else (i + 1, after)
            width += _width(tokens, *inner, scale) + (9 * scale if token == r"\sqrt" else 0)
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
            columns[column] = max(columns.get(column, 0.0), _width(tokens, start, i, scale))
            column = 0 if i < end and tokens[i] == r"\\" else column + 1
            start = i = i + 1
        else:
            i = _group_end(tokens, i) if tokens[i] == "{" else i + 1
    return sum(columns.values()) + 10 * scale * len(columns)


class _Profile:
    """Counts gathered by walking the structure of formulas; the generator's statistics."""

    def __init__(self) -> None:
        self.formulas = 0
        self.events: Counter = Counter()  # "kind@context" -> occurrences
        self.present: Counter = Counter()  # kind -> formulas that have it (in any context)
        self.found: Counter = Counter()  # events of the formula being walked
        self.seen: set[str] = set()  # leaves of the formula being walked
        self.last = ""  # kind of the item just counted: the base of a script that follows
        # "context/room" -> kinds of the items that start with that many tokens left
        self.starts: defaultdict[str, Counter] = defaultdict(Counter)
        # "context/kind/room" -> items that could take scripts, and which scripts they took;
        # room: tokens left in the group after the item, so scripts fill a group's end as in
        # real formulas (`\\frac { 1 } { m ^ { 2 } }`)
        self.bases: Counter = Counter()
        self.scripted: defaultdict[str, Counter] = defaultdict(Counter)  # -> "_", "^", "_^"...
        self.wrapped: Counter = Counter()  # kind -> items of the kind alone in a bare group
        self.repeated: Counter = Counter()  # (category, seen before) -> leaves
        self.tokens: defaultdict[str, Counter] = defaultdict(Counter)  # "context/category"
        self.lengths: defaultdict[str, Counter] = defaultdict(Counter)  # role -> token counts
        self.choices: defaultdict[str, Counter] = defaultdict(Counter)  # named discrete choices

    def add(self, tokens: Sequence[str]) -> None:
        """Walk one tokenized formula."""
        self.formulas += 1
        self.lengths["formula"][min(len(tokens), MAX_LEN)] += 1
        end = len(tokens)
        if CATEGORY_OF.get(tokens[-1]) == "punct":  # final punctuation, maybe after spaces
            end -= 1
            before = tokens[end - 1] if end else ""
            while end and tokens[end - 1] == before and CATEGORY_OF.get(before) == "space":
                end -= 1
        self.choices["ending"][" ".join(tokens[end:])] += 1
        self.choices["split"][_first_relation(tokens, end)] += 1
        self.found, self.seen = Counter(), set()
        self._walk(tokens, 0, end, "main")
        self.events.update(self.found)
        self.present.update({event.split("@")[0] for event in self.found})

    def _event(self, kind: str, ctx: str) -> None:
        """Count an item (after its content, so that ``last`` is this item, not its inside)."""
        self.found[f"{kind}@{ctx}"] += 1
        self.last = kind

    def _walk(self, tokens: Sequence[str], i: int, end: int, ctx: str) -> None:
        self.last = ""
        lead = tokens[i] if i < end and CATEGORY_OF.get(tokens[i]) == "binop" else ""
        self.choices["lead/" + ctx][lead] += 1
        i += bool(lead)
        after_item = False
        while i < end:
            if tokens[i] in SCRIPTS:  # scripts of the item before, counted with it
                base = f"{ctx}/{self.last}/{_room(end - i)}"
                i, pattern = self._scripts(tokens, i, ctx)
                if base in self.bases:
                    self.scripted[base][pattern] += 1
                self.last = ""
            else:
                room = end - i
                i = self._item(tokens, i, end, ctx)
                if after_item and (self.last in KIND_COST or self.last in CONNECTORS):
                    # what joins two items: nothing, an operator, a relation...
                    self.choices["joint/" + ctx][
                        "juxtapose" if self.last in KIND_COST else self.last
                    ] += 1
                after_item = self.last in KIND_COST
                if self.last in KIND_COST:
                    self.starts[f"{ctx}/{_room(room)}"][self.last] += 1
                if self.last in SCRIPTABLE:
                    self.bases[f"{ctx}/{self.last}/{_room(end - i)}"] += 1

    def _walk_content(self, tokens, span: tuple[int, int, int], role: str, ctx: str) -> int:
        first, end, after = span
        self.lengths[role][end - first] += 1
        if end > first:
            self._walk(tokens, first, end, ctx)
        return after

    def _item(self, tokens: Sequence[str], i: int, end: int, ctx: str) -> int:
        """Count the item starting at ``i``; return the index after it."""
        token = tokens[i]
        cat = CATEGORY_OF.get(token)
        if cat in ("binop", "relation", "punct"):
            self._event(cat, ctx)
            self.tokens[f"{ctx}/{cat}"][token] += 1
            if cat == "punct" and i + 1 < end and CATEGORY_OF.get(tokens[i + 1]) == "space":
                self.choices["punct_space/" + ctx]["yes"] += 1
            elif cat == "punct":
                self.choices["punct_space/" + ctx]["no"] += 1
            return i + 1
        if cat in ("space", "digit"):  # a run of one space token, or of digits: one item
            kind = "space" if cat == "space" else "number"
            run = i + 1
            while run < end and (
                tokens[run] == token or kind == "number" and CATEGORY_OF.get(tokens[run]) == "digit"
            ):
                run += 1
            self._event(kind, ctx)
            self.lengths[kind][run - i] += 1
            self.tokens[f"{ctx}/{cat}"].update(tokens[i:run])
            return run
        if cat in LEAF_KINDS:
            self._event(cat, ctx)
            self.tokens[f"{ctx}/{cat}"][token] += 1
            if cat in REUSED:
                pooled = f"{REUSE_POOL[ctx]} {token}"
                self.repeated[cat, pooled in self.seen] += 1
                self.seen.add(pooled)
            return i + 1
        if cat == "bigop":
            return self._bigop(tokens, i, ctx)
        if cat in ("accent", "font") or token in OPERATOR_COMMANDS or token == r"\textrm":
            return self._command(tokens, i, ctx)
        if token == r"\frac":
            after = self._walk_content(tokens, _content(tokens, i + 1), "frac", "arg")
            after = self._walk_content(tokens, _content(tokens, after), "frac", "arg")
            self._event("frac", ctx)
            return after
        if token == r"\sqrt":
            return self._sqrt(tokens, i, ctx)
        if token in LEFT_TOKENS:
            return self._delimited(tokens, i, end, ctx, LEFT_TOKENS, RIGHT_TOKENS, "left")
        if token in PLAIN_PAIRS:
            return self._delimited(tokens, i, end, ctx, {token}, {PLAIN_PAIRS[token]}, "paren")
        if token == "{":
            return self._group(tokens, i, ctx)
        if token == r"\begin{array}":
            return self._array(tokens, i, end, ctx)
        self.last = ""  # a token the grammar does not write: skip it
        return max(_atom_end(tokens, i), i + 1)

    def _scripts(self, tokens: Sequence[str], i: int, ctx: str, role: str = "") -> tuple[int, str]:
        """Walk a subscript and/or superscript; returns the index after them and ``"_^"`` etc."""
        pattern = ""
        while i < len(tokens) and tokens[i] in SCRIPTS and tokens[i] not in pattern:
            script, context = tokens[i], SCRIPT_CONTEXT[tokens[i]]
            pattern += script
            self.found[f"{script}@{ctx}"] += 1
            i = self._walk_content(tokens, _content(tokens, i + 1), role or context, context)
        return i, pattern

    def _bigop(self, tokens: Sequence[str], i: int, ctx: str) -> int:
        self.tokens[f"{ctx}/bigop"][tokens[i]] += 1
        i, pattern = self._scripts(tokens, i + 1, ctx, "limit")
        self.choices["limits"][pattern] += 1
        self._event("bigop", ctx)
        return i

    def _command(self, tokens: Sequence[str], i: int, ctx: str) -> int:
        """Accent, font, word (``\\mathrm { f o r }``) or function (``\\operatorname``)."""
        command = tokens[i]
        first, end, after = _content(tokens, i + 1)
        name = _letters(tokens[first:end])
        if name in FUNCTION_NAMES and (command in OPERATOR_COMMANDS or command in WORD_COMMANDS):
            self._event("function", ctx)
            self.choices["function"][name] += 1
            return after
        if command in OPERATOR_COMMANDS or name and command in WORD_COMMANDS:
            self.last = ""
            if name:
                self._event("word", ctx)
                self.choices["word"][name] += 1
                self.choices["word_command"][
                    command if command in WORD_COMMANDS else FUNCTION_COMMAND
                ] += 1
            return after
        kind = CATEGORY_OF.get(command)
        if kind is None:  # \textrm around something that is not a word
            self.last = ""
            return after
        self.tokens[f"{ctx}/{kind}"][command] += 1
        if end - first == 1:
            self.lengths[kind][1] += 1
            self.choices["arg/" + command][tokens[first]] += 1
        else:
            self._walk_content(tokens, (first, end, after), kind, "arg")
        self._event(kind, ctx)
        return after

    def _sqrt(self, tokens: Sequence[str], i: int, ctx: str) -> int:
        i += 1
        index = ""
        if i < len(tokens) and tokens[i] == "[":
            close = tokens.index("]", i) if "]" in tokens[i:] else len(tokens) - 1
            index = " ".join(tokens[i + 1 : close])
            i = close + 1
        self.choices["sqrt_index"][index] += 1
        after = self._walk_content(tokens, _content(tokens, i), "sqrt", "arg")
        self._event("sqrt", ctx)
        return after

    def _delimited(self, tokens, i: int, end: int, ctx: str, opens, closes, kind: str) -> int:
        close = _matching(tokens, i, end, opens, closes)
        if close < 0:  # unmatched delimiter: not a structure the grammar writes
            self.last = ""
            return i + 1
        self.choices[kind][f"{tokens[i]} {tokens[close]}"] += 1
        if kind == "left":
            inside = tokens[i + 1] == r"\begin{array}" and (
                _matching(tokens, i + 1, close, {r"\begin{array}"}, {r"\end{array}"}) == close - 1
            )
            self.choices["array_left"][f"{tokens[i]} {tokens[close]}" if inside else ""] += 1
        self._walk_content(tokens, (i + 1, close, close + 1), "delim", ctx)
        self._event(kind, ctx)
        return close + 1

    def _group(self, tokens: Sequence[str], i: int, ctx: str) -> int:
        """A group that is no argument: ``{ \\frac { 1 } { 2 } }`` wraps one item."""
        after = _group_end(tokens, i)
        if i + 1 < after - 1 and _atom_end(tokens, i + 1) == after - 1:
            kind = _kind_of(tokens[i + 1])
            if kind:
                self.wrapped[kind] += 1
                self._item(tokens, i + 1, after - 1, ctx)
                return after
        self._walk_content(tokens, (i + 1, after - 1, after), "group", ctx)
        self._event("group", ctx)
        return after

    def _array(self, tokens: Sequence[str], i: int, end: int, ctx: str) -> int:
        close = _matching(tokens, i, end, {r"\begin{array}"}, {r"\end{array}"})
        if close < 0 or i + 1 >= close or tokens[i + 1] != "{":
            self.last = ""
            return i + 1
        spec_end = _group_end(tokens, i + 1)
        self.choices["colspec"][" ".join(tokens[i + 2 : spec_end - 1])] += 1
        rows = 0
        j = spec_end
        while j < close:
            cell_end = j
            while cell_end < close and tokens[cell_end] not in ("&", r"\\"):
                cell_end = _group_end(tokens, cell_end) if tokens[cell_end] == "{" else cell_end + 1
            if cell_end > j:
                braced = tokens[j] == "{" and _group_end(tokens, j) == cell_end
                span = (j + 1, cell_end - 1, cell_end) if braced else (j, cell_end, cell_end)
                self._walk_content(tokens, span, "cell", "cell")
            rows += cell_end < close and tokens[cell_end] == r"\\"
            j = cell_end + 1
        self.lengths["rows"][max(rows, 1)] += 1
        self._event("array", ctx)
        return close + 1

    def event_rates(self) -> dict[str, float]:
        """Mean occurrences per formula of each ``kind@context`` event."""
        return {event: n / max(self.formulas, 1) for event, n in sorted(self.events.items())}

    def repeats(self) -> dict[str, float]:
        """Share of leaves of each reused category that appeared earlier in their formula."""
        return {
            cat: self.repeated[cat, True]
            / max(self.repeated[cat, True] + self.repeated[cat, False], 1)
            for cat in REUSED
        }

    def script_patterns(self) -> dict[str, dict[str, int]]:
        """Per "context/kind/room": how many items had no script (""), "_", "^", "_^", "^_"."""
        return {
            key: {"": n - self.scripted[key].total()} | _counts(self.scripted[key])
            for key, n in sorted(self.bases.items())
        }

    def presence(self) -> dict[str, float]:
        """Share of formulas that have each kind (in any context)."""
        return {kind: n / max(self.formulas, 1) for kind, n in sorted(self.present.items())}


def _room(tokens_left: int) -> str:
    """Bucket of the tokens left for an item and what follows it in its group."""
    return next((str(b) for b in (1, 2, 3, 4, 5, 6, 7, 8, 12, 24) if tokens_left <= b), "more")


def _first_relation(tokens: Sequence[str], end: int) -> str:
    """Where the first top-level relation stands, in tenths of the formula ("" if none)."""
    depth = 0
    for i, token in enumerate(tokens[:end]):
        depth += {"{": 1, "}": -1}.get(token, 0)
        if depth == 0 and CATEGORY_OF.get(token) == "relation" and 0 < i < end - 1:
            return str(round(10 * i / end))
    return ""


def _kind_of(token: str) -> str | None:
    """The generator kind an item starting with ``token`` belongs to (for wrapping groups)."""
    cat = CATEGORY_OF.get(token)
    if cat in LEAF_KINDS or cat in ("accent", "font", "bigop"):
        return cat
    if cat == "digit":
        return "number"
    return {r"\frac": "frac", r"\sqrt": "sqrt"}.get(token) or (
        "left" if token in LEFT_TOKENS else "paren" if token in PLAIN_PAIRS else None
    )


# --- fitting --------------------------------------------------------------------------------


def _profile(formulas: Iterable[str]) -> _Profile:
    profile = _Profile()
    for formula in formulas:
        tokens = tokenize(normalize(formula))
        if tokens:
            profile.add(tokens)
    return profile


def _counts(counter: Counter, keep: int | None = None) -> dict[str, int]:
    """A counter as a JSON object with string keys, most frequent first (top ``keep``)."""
    return {str(k): n for k, n in counter.most_common(keep)}


def fit_statistics(
    formulas: Iterable[str], rounds: int = 12, samples: int = 2000, seed: int = 0
) -> dict:
    """Statistics of real formulas and generator weights fitted to reproduce them.

    The formulas are normalized first. Token, length, kind and script distributions are counted
    directly. Then, for ``rounds`` rounds, ``samples`` formulas are generated and measured:
    each top-level weight is scaled by (real / generated rate of its structure), the spread of
    the per-formula gamma factor by the share of formulas that have the structure, and the
    probability of reusing a letter by the share of repeated letters.
    """
    profile = _profile(formulas)
    if profile.formulas == 0:
        raise ValueError("no formulas to fit statistics on")
    wraps = {
        kind: n / max(sum(profile.events[f"{kind}@{c}"] for c in CONTEXTS), 1)
        for kind, n in sorted(profile.wrapped.items())
    }
    stats = {
        "version": STATS_VERSION,
        "formulas": profile.formulas,
        "tokens": {key: _counts(c) for key, c in sorted(profile.tokens.items())},
        "lengths": {key: _counts(c) for key, c in sorted(profile.lengths.items())},
        "choices": {key: _counts(c, 300) for key, c in sorted(profile.choices.items())},
        "wrap": wraps,
        "targets": profile.event_rates(),
        "presence": profile.presence(),
        "repeats": profile.repeats(),
        "script_patterns": profile.script_patterns(),
        "kinds": {key: _counts(c) for key, c in sorted(profile.starts.items())},
    }
    stats["reuse"] = {cat: 0.3 for cat in REUSED}
    stats["dispersion"] = {k: 1.0 for k in KNOBS if k in stats["presence"]}
    stats["weights"] = {k: 1.0 for k in KNOBS}
    stats["length_factors"] = {str(b): 1.0 for b in range(MAX_LEN // LENGTH_BIN + 1)}
    for step in range(rounds):
        generator = FormulaGenerator(seed + step, stats)
        generated = _profile(generator.generate() for _ in range(samples))
        _rescale(stats, generated, damping=0.8 if step < rounds // 2 else 0.5)
    return stats


def _rescale(stats: dict, generated: _Profile, damping: float) -> None:
    """Scale each weight by (real / generated rate) ** damping, each spread by presence."""
    targets, rates = stats["targets"], generated.event_rates()
    presence, repeats = generated.presence(), generated.repeats()
    for cat, p in stats["reuse"].items():
        ratio = (stats["repeats"][cat] + 1e-3) / (repeats[cat] + 1e-3)
        stats["reuse"][cat] = min(max(p * ratio**damping, 0.0), 0.95)
    for knob, shape in stats["dispersion"].items():
        ratio = stats["presence"][knob] / max(presence.get(knob, 0), 1e-3)
        stats["dispersion"][knob] = min(max(shape * ratio ** (2 * damping), 0.02), 100.0)
    real = _length_shares(stats["lengths"]["formula"])
    made = _length_shares(generated.lengths["formula"])
    for b, factor in stats["length_factors"].items():  # too wide formulas are drawn again
        ratio = (real.get(b, 0) + 1e-3) / (made.get(b, 0) + 1e-3)
        stats["length_factors"][b] = min(max(factor * ratio**damping, 1 / MAX_FACTOR), MAX_FACTOR)
    weights = stats["weights"]
    for knob, weight in weights.items():
        ratio = (targets.get(f"{knob}@main", 0) + 1e-3) / (rates.get(f"{knob}@main", 0) + 1e-3)
        weights[knob] = min(max(weight * ratio**damping, 1 / MAX_FACTOR), MAX_FACTOR)
    # only ratios between kinds matter: keep their geometric mean at 1
    mean = math.exp(sum(math.log(weights[k]) for k in KIND_COST) / len(KIND_COST))
    for kind in KIND_COST:
        weights[kind] /= mean


def _length_shares(counts: dict) -> dict[str, float]:
    """Share of formulas in each bin of LENGTH_BIN lengths."""
    bins: Counter = Counter()
    for length, n in counts.items():
        bins[str(int(length) // LENGTH_BIN)] += n
    total = bins.total()
    return {b: n / total for b, n in bins.items()}


@cache
def default_statistics() -> dict:
    """The statistics shipped with the package (fitted on im2latex-100k val formulas)."""
    try:
        return json.loads(resources.files(__package__).joinpath(STATS_FILE).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{STATS_FILE} is missing from img2latex_lib: run "
            "`python -m img2latex_lib.synth fit <formulas.norm.lst>`"
        ) from None


# --- generation -----------------------------------------------------------------------------


class _Choice:
    """Weighted choice among the keys of ``weights`` (cumulative weights, one bisect each)."""

    def __init__(self, weights: dict) -> None:
        self.items = [k for k, w in weights.items() if w > 0]
        self.cum: list[float] = []
        total = 0.0
        for k in self.items:
            total += weights[k]
            self.cum.append(total)

    def __bool__(self) -> bool:
        return bool(self.items)

    def sample(self, rng: random.Random):
        return rng.choices(self.items, cum_weights=self.cum)[0]


class FormulaGenerator:
    """Seeded generator of normalized formulas; ``stats`` from :func:`fit_statistics`.

    Every method that writes an item gets ``room``, the most tokens it may take, so a formula
    never exceeds the length drawn for it from the fitted length distribution.
    """

    def __init__(self, seed: int, stats: dict | None = None) -> None:
        stats = default_statistics() if stats is None else stats
        if stats.get("version") != STATS_VERSION:
            raise ValueError(
                f"formula statistics have version {stats.get('version')}, "
                f"expected {STATS_VERSION}: refit them with fit_statistics"
            )
        self.rng = random.Random(seed)
        self.stats = json.loads(json.dumps(stats, sort_keys=True))  # one key order: same output
        self._choices: dict[tuple[str, str], _Choice] = {}
        factors = self.stats["length_factors"]
        self._lengths = _Choice(
            {
                length: n * factors[str(int(length) // LENGTH_BIN)]
                for length, n in self.stats["lengths"]["formula"].items()
            }
        )
        self._style: dict[str, float] = {}  # this formula's factor on each weight
        self._used: dict[str, list[str]] = {}  # this formula's leaves so far, by pool/category
        self._makers = {
            "number": self._number,
            "frac": self._frac,
            "sqrt": self._sqrt,
            "paren": self._delimited,
            "left": self._delimited,
            "bigop": self._bigop,
            "accent": self._command,
            "font": self._command,
            "function": self._name,
            "word": self._name,
            "group": self._group,
            "array": self._array,
        }

    def _pick(self, group: str, key: str, default: str = "") -> str:
        """A sample of the fitted distribution ``stats[group][key]``, or ``default`` if empty."""
        if (group, key) not in self._choices:
            self._choices[group, key] = _Choice(self.stats[group].get(key, {}))
        choice = self._choices[group, key]
        return choice.sample(self.rng) if choice else default

    def _length(self, role: str, low: int, high: int) -> int:
        """A length for ``role`` from its fitted distribution, clipped to [low, high]."""
        return min(max(int(self._pick("lengths", role, "1")), low), high)

    def _factor(self, knob: str, ctx: str) -> float:
        """Weight factor on a choice: at top level the fitted weight times this formula's
        spread; inside scripts, arguments and cells none (the real distributions for the same
        context and room decide there)."""
        if ctx != "main":
            return 1.0
        return self.stats["weights"].get(knob, 1.0) * self._style.get(knob, 1.0)

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _leaf(self, ctx: str, category: str) -> str:
        """A token of ``category`` as used in ``ctx`` (or at the top level if never seen there).

        Letters and symbols already in the formula come back with the fitted reuse probability.
        """
        pool = f"{REUSE_POOL[ctx]}/{category}"
        used = self._used.get(pool)
        if used and self._chance(self.stats["reuse"][category]):
            token = self.rng.choice(used)
        else:
            token = self._pick("tokens", f"{ctx}/{category}") or self._pick(
                "tokens", f"main/{category}", CATEGORIES[category][0]
            )
        if category in REUSED and token not in self._used.setdefault(pool, []):
            self._used[pool].append(token)
        return token

    def generate(self) -> str:
        """One formula: normalized tokens joined by single spaces, 1 to 150 tokens, that fits
        the im2latex page width (a formula estimated wider is drawn again, up to 100 times)."""
        for _ in range(100):
            tokens = self._formula()
            if _width(tokens) <= MAX_WIDTH_PT:
                break
        return normalize(" ".join(tokens))  # one spelling: ``\ast`` as ``*``, ``\quad \quad``...

    def _formula(self) -> list[str]:
        self._style = {
            knob: self.rng.gammavariate(shape, 1 / shape)
            for knob, shape in self.stats["dispersion"].items()
        }
        self._used = {}
        ending = self._pick("choices", "ending").split()
        length = int(self._lengths.sample(self.rng))
        budget = min(max(length, len(ending) + 1), MAX_LEN) - len(ending)
        split = self._pick("choices", "split")
        if not split or budget < 3:
            return self._expr(budget, "main", 0) + ending
        size = min(max(round(budget * int(split) / 10), 1), budget - 2)
        left = self._expr(size, "main", 0, spare=budget - size - 2)
        right = self._expr(budget - len(left) - 1, "main", 0)
        return [*left, self._leaf("main", "relation"), *right, *ending]

    def _expr(self, budget: int, ctx: str, depth: int, spare: int = 0) -> list[str]:
        """Items joined by connectors (operators, relations, punctuation, spaces).

        About ``budget`` tokens: the last item may take ``spare`` tokens more (the left side of
        a relation, which the right side makes up for). Items are chosen as in real formulas
        with as many tokens left in their group.
        """
        out: list[str] = []
        if budget <= 0:
            return out
        lead = self._pick("choices", "lead/" + ctx)
        if lead and (budget > 1 or ctx in SCRIPT_CONTEXT.values()):  # `- x`; alone: `^ { * }`
            out.append(lead)
        kind = ""
        while len(out) < budget:
            joint = [] if kind in ("", *BEFORE_OPERAND) else self._connector(ctx)
            if budget - len(out) - len(joint) >= 1:  # else the next item follows directly
                out += joint
            item, kind = self._item(budget + spare - len(out), ctx, depth)
            out += item
        return out

    def _connector(self, ctx: str) -> list[str]:
        real = self.stats["choices"].get("joint/" + ctx) or {"juxtapose": 1}
        connector = _Choice({c: n * self._factor(c, ctx) for c, n in real.items()}).sample(self.rng)
        if connector == "juxtapose":
            return []
        if connector == "space":
            return self._space(ctx)
        joint = [self._leaf(ctx, connector)]
        if connector == "punct" and self._pick("choices", "punct_space/" + ctx) == "yes":
            joint += self._space(ctx)
        return joint

    def _space(self, ctx: str) -> list[str]:
        return [self._leaf(ctx, "space")] * self._length("space", 1, 8)

    def _item(self, room: int, ctx: str, depth: int) -> tuple[list[str], str]:
        """One item with its scripts, maybe wrapped in braces; returns it and its kind.

        ``room``: the tokens left in the group, which the item may not exceed.
        """
        left = room  # for the statistics; room shrinks below when an operand must follow
        real = self.stats["kinds"].get(f"{ctx}/{_room(left)}") or self.stats["kinds"].get(
            f"main/{_room(left)}", {}
        )
        allowed = {
            k: n * self._factor(k, ctx)
            for k, n in real.items()
            if KIND_COST[k] <= room and (depth < MAX_DEPTH or k in LEAF_KINDS)
        }
        choice = _Choice(allowed)
        kind = choice.sample(self.rng) if choice else "latin"
        maker = self._makers.get(kind)
        if kind in BEFORE_OPERAND:  # keep a token for the operand that follows
            room -= 1
        tokens = maker(kind, room, ctx, depth + 1) if maker else [self._leaf(ctx, kind)]
        if not tokens:  # a structure with nothing that fits: a letter instead
            kind, tokens = "latin", [self._leaf(ctx, "latin")]
        inner_script = kind == "font" and not set(SCRIPTS).isdisjoint(tokens)
        if room - len(tokens) >= 2 and (  # `\mathcal { x ^ { a } } ^ { b }` is a double script
            inner_script or self._chance(self.stats["wrap"].get(kind, 0))
        ):
            tokens = ["{", *tokens, "}"]
        scripts = self._plan_scripts(kind, ctx, left - len(tokens)) if kind in SCRIPTABLE else []
        for script, size in scripts:
            if room - len(tokens) >= 4:
                tokens += self._script(script, min(size, room - len(tokens) - 3), depth + 1)
        return tokens, kind

    def _plan_scripts(self, kind: str, ctx: str, left: int) -> list[tuple[str, int]]:
        """Which scripts an item of ``kind`` gets here (none, "_", "^", "_^", "^_"), and sizes.

        As in real formulas of the same context with as many tokens ``left`` in the group
        after the item.
        """
        patterns = self.stats["script_patterns"].get(f"{ctx}/{kind}/{_room(left)}", {})
        choice = _Choice(
            {
                pattern: n * math.prod(self._factor(s, ctx) for s in pattern)
                for pattern, n in patterns.items()
            }
        )
        pattern = choice.sample(self.rng) if choice else ""
        return [(s, self._length(SCRIPT_CONTEXT[s], 1, MAX_LEN)) for s in pattern]

    def _script(self, script: str, size: int, depth: int) -> list[str]:
        """``_ { content }`` or ``^ { content }`` with ``size`` tokens of content at most."""
        return [script, "{", *self._expr(size, SCRIPT_CONTEXT[script], depth), "}"]

    def _braced(self, role: str, room: int, ctx: str, depth: int) -> list[str]:
        """``{ content }``, the content of a fitted length for ``role``; at most ``room`` tokens."""
        return ["{", *self._expr(self._length(role, 1, room - 2), ctx, depth), "}"]

    def _number(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        return [self._leaf(ctx, "digit") for _ in range(self._length("number", 1, room))]

    def _frac(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        numerator = self._braced("frac", room - 4, "arg", depth)
        denominator = self._braced("frac", room - 1 - len(numerator), "arg", depth)
        return [r"\frac", *numerator, *denominator]

    def _sqrt(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        index = self._pick("choices", "sqrt_index").split()
        head = [r"\sqrt", "[", *index, "]"] if index and room >= len(index) + 6 else [r"\sqrt"]
        return head + self._braced("sqrt", room - len(head), "arg", depth)

    def _delimited(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        opening, closing = self._pick("choices", kind, "( )").split()
        inner = self._expr(self._length("delim", 1, room - 2), ctx, depth)
        return [opening, *inner, closing]

    def _bigop(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        out = [self._leaf(ctx, "bigop")]
        for script in self._pick("choices", "limits"):
            if room - len(out) >= 4:
                out += self._script(script, self._length("limit", 1, room - len(out) - 3), depth)
        return out

    def _command(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        """An accent or font command with its argument."""
        command = self._leaf(ctx, kind)
        size = self._length(kind, 1, room - 3)
        arg = self._pick("choices", "arg/" + command)
        if size == 1 and arg:
            return [command, "{", arg, "}"]
        return [command, "{", *self._expr(size, "arg", depth), "}"]

    def _name(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        """``\\mathrm { s i n }``: a fitted function name or word that fits, or [] if none did."""
        command = (
            FUNCTION_COMMAND
            if kind == "function"
            else self._pick("choices", "word_command", FUNCTION_COMMAND)
        )
        for _ in range(4):
            name = self._pick("choices", kind)
            if name and len(name) + 3 <= room:
                return [command, "{", *name, "}"]
        return []

    def _group(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        return self._braced("group", room, ctx, depth)

    def _array(self, kind: str, room: int, ctx: str, depth: int) -> list[str]:
        """``\\begin{array} { c c } { a } & { b } \\\\ ... \\end{array}``, maybe in a pair."""
        spec = self._pick("choices", "colspec", "c").split()
        columns = len(spec)
        pair = self._pick("choices", "array_left").split()
        rows = self._length("rows", 1, MAX_LEN)
        fixed = len(pair) + 4 + columns  # pair, \begin{array} { spec }, \end{array}
        while rows > 1 and fixed + rows * 4 * columns > room:  # a cell: { x } and & or \\
            rows -= 1
        if fixed + rows * 4 * columns > room:
            return []
        cell_room = (room - fixed) // (rows * columns) - 3
        out = [r"\begin{array}", "{", *spec, "}"]
        for _ in range(rows):
            for column in range(columns):
                cell = self._expr(self._length("cell", 0, cell_room), "cell", depth)
                out += ["{", *cell, "}", "&" if column < columns - 1 else r"\\"]
        out.append(r"\end{array}")
        return [pair[0], *out, pair[1]] if pair else out


def generate_formulas(n: int, seed: int = 0) -> list[str]:
    """``n`` formulas from one generator seeded with ``seed`` (default statistics)."""
    generator = FormulaGenerator(seed)
    return [generator.generate() for _ in range(n)]


# --- command line ---------------------------------------------------------------------------


def _read_formulas(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read formulas ({error})") from None
    return text.splitlines()[:lines]


def main(argv: Sequence[str] | None = None) -> None:
    """``fit FORMULAS`` writes the package statistics; ``sample`` prints generated formulas."""
    parser = argparse.ArgumentParser(
        prog="python -m img2latex_lib.synth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit statistics on a formulas.norm.lst file")
    fit.add_argument("formulas", type=Path)
    fit.add_argument(
        "--lines",
        type=int,
        default=DEV_TEST_START,
        help="use only the first LINES lines (default: %(default)s, the val lines "
        "before the held-out dev-test set)",
    )
    fit.add_argument("--out", type=Path, default=Path(__file__).with_name(STATS_FILE))
    fit.add_argument("--rounds", type=int, default=12, help="simulation rounds (%(default)s)")
    fit.add_argument(
        "--samples", type=int, default=2000, help="formulas generated per round (%(default)s)"
    )
    sample = commands.add_parser("sample", help="print generated formulas")
    sample.add_argument("-n", type=int, default=10)
    sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "fit":
            formulas = _read_formulas(args.formulas, args.lines)
            stats = fit_statistics(formulas, rounds=args.rounds, samples=args.samples)
            stats["source"] = {"file": args.formulas.name, "lines": len(formulas)}
            args.out.write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
            print(f"fitted on {stats['formulas']} formulas -> {args.out.name}")
        else:
            print("\n".join(generate_formulas(args.n, args.seed)))
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
