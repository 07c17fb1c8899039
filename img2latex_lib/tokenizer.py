"""LaTeX tokenizer, normalizer and vocabulary.

Tokens follow the im2latex-100k normalized formulas: commands (``\\frac``), single characters,
braces, escaped symbols (``\\{``, ``\\,``, ``\\\\``), a bare ``\\`` for a control space, and a few
fused tokens that the data set keeps whole: ``\\left(``, ``\\right\\}``, ``\\begin{array}``,
``\\operatorname*``, ``--`` and ``---``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, SOS, EOS, UNK)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = range(4)
MAX_LEN = 150

_DELIMITER = r"(?:\\[a-zA-Z]+|\\[^a-zA-Z\s]|[^\s\\{}])"
_TOKEN_RE = re.compile(
    r"\\(?:left|right)(?![a-zA-Z])\s*" + _DELIMITER  # \left( \right\} \left.
    + r"|\\(?:begin|end)\s*\{\s*[a-zA-Z]+\*?\s*\}"  # \begin{array}
    + r"|\\[a-zA-Z]+\*"  # \operatorname*
    + r"|\\[a-zA-Z]+"  # \frac
    + r"|\\[^a-zA-Z\s]"  # \{ \, \\
    + r"|\\(?=\s|$)"  # control space
    + r"|-{2,3}"  # -- ---
    + r"|\S"
)
_SPACE_RE = re.compile(r"\s+")


def tokenize(latex: str) -> list[str]:
    """Split LaTeX into im2latex-style tokens; spaced and un-spaced input give the same tokens.

    >>> tokenize(r"\\frac{a}{b}")
    ['\\\\frac', '{', 'a', '}', '{', 'b', '}']
    """
    return [_SPACE_RE.sub("", token) for token in _TOKEN_RE.findall(latex)]


# --- normalization --------------------------------------------------------------------------

#: Commands with the same glyph: the key is rewritten to the value.
SYNONYMS: dict[str, str] = {
    r"\rightarrow": r"\to",  # same arrow
    r"\le": r"\leq",
    r"\ge": r"\geq",
    r"\ne": r"\neq",
    r"\gets": r"\leftarrow",
    r"\land": r"\wedge",
    r"\lor": r"\vee",
    r"\lnot": r"\neg",
    r"\lbrack": "[",
    r"\rbrack": "]",
    r"\lbrace": r"\{",
    r"\rbrace": r"\}",
    r"\vert": "|",
    r"\Vert": r"\|",
    r"\dagger": r"\dag",
    r"\ast": "*",  # the same binary operator
}

#: Quad spaces, in ems: a run of them is rewritten as ``\qquad`` s and at most one ``\quad``.
QUADS = {r"\quad": 1, r"\qquad": 2}

#: Named operators, spelled as im2latex-100k spells them: ``\sin`` -> ``\operatorname { s i n }``
#: (same glyphs and spacing); those with limits below take ``\operatorname*``.
OPERATORS = frozenset("""arccos arcsin arctan arg cos cosh cot coth csc deg dim exp hom ker lg ln
    log sec sin sinh tan tanh""".split())
LIMIT_OPERATORS = frozenset("det gcd inf lim liminf limsup max min Pr sup".split())

#: Old font switches (scope: rest of the group) and the command that takes an argument instead.
FONT_SWITCHES: dict[str, str] = {
    r"\rm": r"\mathrm",
    r"\bf": r"\mathbf",
    r"\it": r"\mathit",
    r"\cal": r"\mathcal",
    r"\sf": r"\mathsf",
    r"\tt": r"\mathtt",
}

#: Number of mandatory arguments of commands that take them (for finding a script's argument).
ARITY: dict[str, int] = {
    r"\frac": 2, r"\dfrac": 2, r"\tfrac": 2, r"\binom": 2, r"\stackrel": 2, r"\overset": 2,
    r"\underset": 2, r"\sqrt": 1, r"\mathrm": 1, r"\mathbf": 1, r"\mathit": 1, r"\mathcal": 1,
    r"\mathsf": 1, r"\mathtt": 1, r"\mathbb": 1, r"\mathfrak": 1, r"\boldsymbol": 1,
    r"\operatorname": 1, r"\operatorname*": 1, r"\hat": 1, r"\widehat": 1, r"\tilde": 1,
    r"\widetilde": 1, r"\bar": 1, r"\overline": 1, r"\underline": 1, r"\vec": 1, r"\dot": 1,
    r"\ddot": 1, r"\check": 1, r"\breve": 1, r"\acute": 1, r"\grave": 1, r"\text": 1,
    r"\textrm": 1, r"\textbf": 1, r"\textit": 1, r"\mbox": 1, r"\hbox": 1, r"\overbrace": 1,
    r"\underbrace": 1, r"\overrightarrow": 1, r"\overleftarrow": 1,
}


def _group_end(tokens: Sequence[str], start: int) -> int:
    """Index just past the balanced ``{...}`` group that starts at ``start``."""
    depth = 0
    for i in range(start, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[i], 0)
        if depth == 0:
            return i + 1
    return len(tokens)


def _is_one_group(tokens: Sequence[str]) -> bool:
    """``tokens`` are one closed ``{...}`` group."""
    return (tokens[:1] == ["{"] and tokens[-1:] == ["}"] and _group_end(tokens, 0) == len(tokens)
            and tokens.count("{") == tokens.count("}"))


def _atom_end(tokens: Sequence[str], start: int) -> int:
    """Index just past the atom at ``start``: a group, a command with its arguments, a token."""
    if start >= len(tokens):
        return start
    if tokens[start] == "{":
        return _group_end(tokens, start)
    end = start + 1
    if tokens[start] == r"\sqrt" and end < len(tokens) and tokens[end] == "[":
        while end < len(tokens) and tokens[end] != "]":
            end += 1
        end += 1
    for _ in range(ARITY.get(tokens[start], 0)):
        end = _atom_end(tokens, end)
    return end


def _replace_font_switches(tokens: list[str]) -> list[str]:
    r"""``{ \rm d x }`` -> ``\mathrm { d x }``: a switch that opens a (closed) group becomes a
    command."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        opens_switch = tokens[i] == "{" and i + 1 < len(tokens) and tokens[i + 1] in FONT_SWITCHES
        end = _group_end(tokens, i) if opens_switch else i + 1
        if opens_switch and _is_one_group(tokens[i:end]):
            inner = _replace_font_switches(tokens[i + 2 : end - 1])
            out += [FONT_SWITCHES[tokens[i + 1]], "{", *inner, "}"]
            i = end
        else:
            out.append(tokens[i])
            i += 1
    return out


_NOT_AN_ARGUMENT = frozenset({"{", "}", "^", "_", "&", "\\\\", "]"})


def _braced(tokens: list[str], start: int) -> tuple[list[str], int]:
    """The atom at ``start`` as a braced group (normalized inside), and the index after it."""
    end = _atom_end(tokens, start)
    inner = _brace_arguments(tokens[start:end])
    if tokens[start] == "{":
        return inner, end
    return ["{", *inner, "}"], end


def _brace_arguments(tokens: list[str]) -> list[str]:
    """``x ^ 2`` -> ``x ^ { 2 }``, ``\frac 1 2`` -> ``\frac { 1 } { 2 }``: every script and
    command argument becomes a braced group."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        out.append(token)
        i += 1
        count = 1 if token in ("^", "_") else ARITY.get(token, 0)
        if token == r"\sqrt" and i < len(tokens) and tokens[i] == "[":
            end = i
            while end < len(tokens) and tokens[end] != "]":
                end += 1
            out += _brace_arguments(tokens[i:end + 1])
            i = end + 1
        for _ in range(count):
            if i >= len(tokens) or tokens[i] in _NOT_AN_ARGUMENT - {"{"}:
                break
            group, i = _braced(tokens, i)
            out += group
    return out


def _spell_operators(tokens: list[str]) -> list[str]:
    r"""``\sin x`` -> ``\operatorname { s i n } x``; ``\lim`` -> ``\operatorname* { l i m }``."""
    out: list[str] = []
    for token in tokens:
        name = token[1:]
        if name in OPERATORS or name in LIMIT_OPERATORS:
            command = r"\operatorname*" if name in LIMIT_OPERATORS else r"\operatorname"
            out += [command, "{", *name, "}"]
        else:
            out.append(token)
    return out


def _merge_quads(tokens: list[str]) -> list[str]:
    r"""``\quad \quad`` -> ``\qquad``, ``\quad \qquad`` -> ``\qquad \quad``: the same space."""
    out: list[str] = []
    ems = 0
    for token in [*tokens, ""]:
        if token in QUADS:
            ems += QUADS[token]
            continue
        out += [r"\qquad"] * (ems // 2) + [r"\quad"] * (ems % 2)
        ems = 0
        out.append(token)
    return out[:-1]


#: Commands whose argument is text, where ``'`` is an apostrophe, not a prime.
TEXT_COMMANDS = frozenset({r"\text", r"\textrm", r"\textbf", r"\textit", r"\mbox", r"\hbox"})


def _spell_primes(tokens: list[str]) -> list[str]:
    r"""``f ' ( x )`` -> ``f ^ { \prime } ( x )``, ``x ' ' ^ { 2 }`` -> ``x ^ { \prime \prime 2 }``:
    in math, LaTeX reads a run of primes, and a superscript right after it, as one superscript.
    A prime that opens a group (``x ^ { ' }``) or stands in text (``\text { i t ' s }``) is left
    alone. Expects braced script and command arguments."""
    out: list[str] = []
    in_text = [False]  # for each open group: is it a text command's argument?
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "{":
            in_text.append(in_text[-1] or (bool(out) and out[-1] in TEXT_COMMANDS))
        elif token == "}" and len(in_text) > 1:
            in_text.pop()
        if token != "'" or not out or out[-1] == "{" or in_text[-1]:
            out.append(token)
            i += 1
            continue
        end = i
        while end < len(tokens) and tokens[end] == "'":
            end += 1
        out += ["^", "{"] + [r"\prime"] * (end - i)
        if end + 1 < len(tokens) and tokens[end] == "^" and tokens[end + 1] == "{":
            in_text.append(False)  # the superscript's group goes on after the primes
            i = end + 2
        else:
            out.append("}")
            i = end
    return out


#: TeX's atom classes of the tokens :func:`_drop_redundant_braces` needs to know (a token not
#: listed is not assumed to be anything).
RELATIONS = frozenset(r"""= < > : \leq \geq \neq \equiv \sim \simeq \approx \to \in \ni \subset
    \supset \subseteq \supseteq \propto \perp \mid \parallel \Rightarrow \leftarrow
    \leftrightarrow \Leftrightarrow \Longrightarrow \longrightarrow \Leftarrow \mapsto
    \longmapsto \ll \gg \cong \doteq \vdash \asymp \uparrow \downarrow \prec \succ \preceq
    \succeq \models""".split())
BINARY_OPERATORS = frozenset(r"""+ - * \pm \mp \cdot \times \otimes \oplus \ominus \odot \wedge
    \vee \circ \star \bullet \cap \cup \setminus \div""".split())
OPENINGS = frozenset(r"( [ \{ \langle \lfloor \lceil".split())
CLOSINGS = frozenset(r") ] \} \rangle \rfloor \rceil".split())
PUNCTUATION = frozenset([",", ";"])
LARGE_OPERATORS = frozenset(r"""\sum \int \prod \oint \coprod \bigcup \bigcap \bigotimes
    \bigoplus \bigwedge \bigvee""".split())
ORDINARY_SYMBOLS = frozenset(r"""\alpha \beta \gamma \delta \epsilon \varepsilon \zeta \eta
    \theta \vartheta \iota \kappa \lambda \mu \nu \xi \pi \varpi \rho \varrho \sigma
    \varsigma \tau \upsilon \phi \varphi \chi \psi \omega \Gamma \Delta \Theta \Lambda \Xi
    \Pi \Sigma \Upsilon \Phi \Psi \Omega \infty \partial \nabla \hbar \ell \emptyset
    \aleph""".split())
#: Commands whose result, with their arguments, is one ordinary atom (LaTeX's fractions put
#: themselves in a group, so ``{ \frac { 1 } { 2 } }`` and ``\frac { 1 } { 2 }`` look alike).
ORDINARY_COMMANDS = frozenset(r"""\mathrm \mathbf \mathit \mathcal \mathsf \mathtt \mathbb
    \mathfrak \hat \widehat \tilde \widetilde \bar \overline \underline \vec \dot \ddot
    \check \breve \acute \grave \sqrt \frac \dfrac \tfrac \binom""".split())
#: ``\left`` / ``\right`` delimiters that plain LaTeX knows (the im2latex template has no amsmath).
PLAIN_DELIMITERS = frozenset(r"""( ) [ ] \{ \} | \| . / \langle \rangle \lfloor \rfloor \lceil
    \rceil""".split())
_KNOWN_COMMANDS = RELATIONS | BINARY_OPERATORS | LARGE_OPERATORS | ORDINARY_SYMBOLS


def _delimiter(token: str | None, side: str) -> bool:
    return token is not None and token.startswith(side) and token[len(side):] in PLAIN_DELIMITERS


def _ordinary(token: str | None) -> bool:
    return token is not None and ((len(token) == 1 and token.isalnum())
                                  or token in ORDINARY_SYMBOLS)


def _atom_class(tokens: Sequence[str]) -> str | None:
    """"ord" or "inner" when ``tokens`` make exactly one atom of that class, else None."""
    if len(tokens) == 1:
        return "ord" if _ordinary(tokens[0]) else None
    if not tokens:
        return None
    head = tokens[0]
    if head == "{":
        return "ord" if _is_one_group(tokens) else None
    if head in ORDINARY_COMMANDS:
        end = 1
        if head == r"\sqrt" and tokens[end] == "[":
            end = tokens.index("]", end) + 1 if "]" in tokens[end:] else len(tokens)
        for _ in range(ARITY[head]):  # each argument a group (a malformed one is left alone)
            if end >= len(tokens) or tokens[end] != "{":
                return None
            end = _group_end(tokens, end)
        return "ord" if end == len(tokens) else None
    if _delimiter(head, r"\left"):
        depth = 0
        for k, token in enumerate(tokens):
            depth += _delimiter(token, r"\left") - _delimiter(token, r"\right")
            if depth == 0:
                return "inner" if k == len(tokens) - 1 else None
    return None


def _spaced_alike_before(out: Sequence[str]) -> bool:
    """The atom before a group is spaced from it alike whether the group is ordinary or inner,
    in every style (TeX's spacing table): nothing, an opening, a relation, punctuation, an
    inner atom, or a binary operator that stays binary (it follows an ordinary atom)."""
    before = out[-1] if out else None
    if (before in (None, "{", "&", "\\\\") or before in OPENINGS or before in RELATIONS
            or before in PUNCTUATION or _delimiter(before, r"\left")
            or _delimiter(before, r"\right")):
        return True
    if before in BINARY_OPERATORS and len(out) > 1:
        operand = out[-2]
        return (_ordinary(operand) or operand in CLOSINGS or operand == "}"
                or _delimiter(operand, r"\right"))
    return False


def _spaced_alike_after(tokens: Sequence[str], end: int) -> bool:
    """The same for the atom after a group: nothing, a closing, a relation, a large operator,
    an inner atom, or a binary operator that stays binary (an operand follows it)."""
    after = tokens[end] if end < len(tokens) else None
    if (after in (None, "}", "&", "\\\\") or after in CLOSINGS or after in RELATIONS
            or after in LARGE_OPERATORS or _delimiter(after, r"\left")
            or _delimiter(after, r"\right")):
        return True
    if after in BINARY_OPERATORS:
        operand = tokens[end + 1] if end + 1 < len(tokens) else None
        return not (operand in (None, "}", "&", "\\\\") or operand in RELATIONS
                    or operand in CLOSINGS or operand in PUNCTUATION
                    or _delimiter(operand, r"\right"))
    return False


def _drop_redundant_braces(tokens: list[str], math_list: bool = True) -> list[str]:
    r"""``x { \frac { 1 } { 2 } }`` -> ``x \frac { 1 } { 2 }``, ``_ { { i } }`` -> ``_ { i }``:
    braces around one atom go where they change nothing in the picture. A group makes its
    content an ordinary atom, so braces around an ordinary atom (a letter, ``\mathrm { d }``,
    ``\hat { x }``, a fraction, a group) go unless a script follows (``{ x } ^ { 2 }`` places
    the script differently); braces around an inner atom (``\left( … \right)``) go only where
    both neighbours are spaced alike from either class (``x { \left( a \right) }`` keeps
    them: TeX puts a thin space between an ordinary and an inner atom). A command's argument
    keeps its braces, and so does any group right after a command this module does not know
    (nothing inside those changes). A group that is all of a math list goes too
    (``\bar { { W ( \Phi ) } }``): the list holds one ordinary atom either way."""
    if not math_list:  # a text or an unknown command's argument: left as it is
        return tokens
    if _is_one_group(tokens):
        return _drop_redundant_braces(tokens[1:-1])
    out: list[str] = []
    i = 0
    arguments = 0  # groups still to come that are a command's arguments (-1: all that follow)
    owner = None  # the command (or script) they belong to
    while i < len(tokens):
        token = tokens[i]
        if token == "{":
            end = _group_end(tokens, i)
            if not _is_one_group(tokens[i:end]):  # never closed: the rest stays as it is
                out += tokens[i:]
                break
            math = not arguments or owner in ("^", "_") or owner in ORDINARY_COMMANDS
            inner = _drop_redundant_braces(tokens[i + 1 : end - 1], math)
            kind = None if arguments else _atom_class(inner)
            scripted = end < len(tokens) and tokens[end] in ("^", "_", "'")
            if kind and not scripted and (kind == "ord" or (
                    _spaced_alike_before(out) and _spaced_alike_after(tokens, end))):
                out += inner
            else:
                out += ["{", *inner, "}"]
            arguments -= arguments > 0
            i = end
            continue
        out.append(token)
        i += 1
        if token == r"\sqrt" and i < len(tokens) and tokens[i] == "[":  # keep [ n ] as it is
            close = tokens.index("]", i) + 1 if "]" in tokens[i:] else len(tokens)
            out += tokens[i:close]
            i = close
        owner = token
        if token in ("^", "_"):
            arguments = 1
        elif token in ARITY:
            arguments = ARITY[token]
        elif (token[:1] == "\\" and token[1:2].isalpha() and token not in _KNOWN_COMMANDS
              and not _delimiter(token, r"\left") and not _delimiter(token, r"\right")):
            arguments = -1
        else:
            arguments = 0
    return out


def normalize(latex: str) -> str:
    r"""Map equivalent spellings that render identically to one form; returns spaced tokens.

    Rules, each with an example:

    - spacing and tokenization: ``\frac{a}{b}`` -> ``\frac { a } { b }``;
      ``\left (`` -> ``\left(``
    - synonyms with the same glyph (:data:`SYNONYMS`): ``a \le b`` -> ``a \leq b``,
      ``\rightarrow`` -> ``\to``, ``\lbrace`` -> ``\{``, ``a \ast b`` -> ``a * b``
    - named operators as im2latex-100k spells them: ``\sin x`` -> ``\operatorname { s i n } x``,
      ``\lim _ { n }`` -> ``\operatorname* { l i m } _ { n }``
    - old font switches opening a group: ``{ \rm d } x`` -> ``\mathrm { d } x``,
      ``{ \cal L }`` -> ``\mathcal { L }``
    - script and command arguments always braced: ``x ^ 2`` -> ``x ^ { 2 }``,
      ``x _ \alpha`` -> ``x _ { \alpha }``, ``\frac 1 2`` -> ``\frac { 1 } { 2 }``,
      ``e ^ \frac 1 2`` -> ``e ^ { \frac { 1 } { 2 } }``
    - primes as the superscript they are: ``f '`` -> ``f ^ { \prime }``,
      ``x ' ^ 2`` -> ``x ^ { \prime 2 }``
    - quad spaces merged: ``\quad \quad`` -> ``\qquad``
    - braces that change nothing in the picture dropped: ``x { \frac { 1 } { 2 } }`` ->
      ``x \frac { 1 } { 2 }``, ``_ { { i } }`` -> ``_ { i }`` (:func:`_drop_redundant_braces`)
    """
    tokens = [SYNONYMS.get(t, t) for t in tokenize(latex)]
    tokens = _spell_operators([_fuse_delimiter_synonym(t) for t in tokens])
    for _ in range(4):  # a rule can expose work for the other one (``^ \rm``): run to a fixpoint
        rewritten = _brace_arguments(_replace_font_switches(tokens))
        if rewritten == tokens:
            break
        tokens = rewritten
    return " ".join(_drop_redundant_braces(_merge_quads(_spell_primes(tokens))))


#: Commands followed by TeX dimensions: how many braced ones (0: one bare, ``\\kern - 1 m u``).
DIMENSION_ARGUMENTS = {
    r"\hspace": 1, r"\hspace*": 1, r"\vspace": 1, r"\vspace*": 1, r"\mspace": 1,
    r"\raisebox": 1, r"\rule": 2, r"\kern": 0, r"\mkern": 0, r"\hskip": 0, r"\vskip": 0,
    r"\mskip": 0,
}
UNITS = {"pt", "pc", "in", "bp", "cm", "mm", "dd", "cc", "sp", "em", "ex", "mu"}


def to_latex(formula: str) -> str:
    r"""LaTeX source of a space-tokenized formula: its tokens joined by spaces, except TeX
    dimensions, written whole (``\hspace { 0 . 4 i n }`` -> ``\hspace {0.4in}``,
    ``\kern - 1 m u`` -> ``\kern -1mu``): TeX ends a number at a space and reads a unit as one
    word, so the spaced form does not compile; and a prime glued to a prime or ``^`` after it
    (``x ' ^ { 2 }`` -> ``x '^ { 2 }``): LaTeX's prime looks at the very next token, and a space
    there makes a double superscript. Other formulas come back unchanged."""
    return _glue_primes(_whole_dimensions(formula))


def _glue_primes(formula: str) -> str:
    """``'`` tokens joined to a ``'`` or ``^`` token that follows them."""
    if "'" not in formula:
        return formula
    tokens = formula.split()
    out = [tokens[0]]
    for previous, token in pairwise(tokens):
        if previous == "'" and token in ("'", "^"):
            out[-1] += token
        else:
            out.append(token)
    return " ".join(out)


def _whole_dimensions(formula: str) -> str:
    """TeX dimensions written whole (see :func:`to_latex`)."""
    tokens = formula.split()
    if not DIMENSION_ARGUMENTS.keys() & set(tokens):
        return formula
    out, i = [], 0
    while i < len(tokens):
        out.append(tokens[i])
        arguments, i = DIMENSION_ARGUMENTS.get(tokens[i]), i + 1
        if arguments and i < len(tokens) and tokens[i] == "*":  # \hspace * { ... }
            out.append("*")
            i += 1
        if arguments == 0:
            end = _bare_dimension_end(tokens, i)
            if end > i:
                out.append("".join(tokens[i:end]))
                i = end
        for _ in range(arguments or 0):
            if i < len(tokens) and tokens[i] == "{":
                end = _group_end(tokens, i)
                out.append("".join(tokens[i:end]))
                i = end
    return " ".join(out)


def _bare_dimension_end(tokens: Sequence[str], start: int) -> int:
    """Index past an unbraced dimension at ``start`` (signs, a number, a unit), else ``start``."""
    i = start
    while i < len(tokens) and tokens[i] in ("+", "-"):
        i += 1
    number = i
    while i < len(tokens) and (tokens[i].isdigit() or tokens[i] in (".", ",")):
        i += 1
    if i == number or "".join(tokens[i : i + 2]) not in UNITS:
        return start
    return i + 2


def _fuse_delimiter_synonym(token: str) -> str:
    r"""``\left\lbrace`` -> ``\left\{`` (synonyms inside fused delimiters)."""
    for side in (r"\left", r"\right"):
        if token.startswith(side) and len(token) > len(side):
            delimiter = token[len(side) :]
            return side + SYNONYMS.get(delimiter, delimiter)
    return token


# --- vocabulary -----------------------------------------------------------------------------


@dataclass
class Vocab:
    """Token <-> id mapping with the special tokens first (``<pad>`` is id 0)."""

    id_to_token: list[str]
    token_to_id: dict[str, int] = field(init=False)
    unknown_counts: Counter = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        if tuple(self.id_to_token[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with the special tokens {SPECIAL_TOKENS}")
        if len(set(self.id_to_token)) != len(self.id_to_token):
            raise ValueError("vocabulary has duplicate tokens")
        self.token_to_id = {token: i for i, token in enumerate(self.id_to_token)}

    @classmethod
    def build(cls, formulas: Iterable[str | Sequence[str]], min_freq: int = 1) -> Vocab:
        """Vocabulary of every token seen at least ``min_freq`` times, most frequent first."""
        counts: Counter = Counter()
        for formula in formulas:
            counts.update(tokenize(formula) if isinstance(formula, str) else formula)
        kept = [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if n >= min_freq and t not in SPECIAL_TOKENS]
        return cls(list(SPECIAL_TOKENS) + kept)

    def __len__(self) -> int:
        return len(self.id_to_token)

    def encode(
        self, formula: str | Sequence[str], max_len: int = MAX_LEN, pad_to: int | None = None
    ) -> list[int]:
        """Ids of ``<sos> tokens <eos>``, padded with ``<pad>`` to ``pad_to`` if given.

        Raises ValueError if the formula has more than ``max_len`` tokens.
        """
        tokens = tokenize(formula) if isinstance(formula, str) else list(formula)
        if len(tokens) > max_len:
            raise ValueError(f"formula has {len(tokens)} tokens, more than max_len={max_len}")
        ids = [SOS_ID]
        for token in tokens:
            token_id = self.token_to_id.get(token, UNK_ID)
            if token_id == UNK_ID:
                self.unknown_counts[token] += 1
            ids.append(token_id)
        ids.append(EOS_ID)
        if pad_to is not None:
            if len(ids) > pad_to:
                raise ValueError(f"{len(ids)} ids do not fit pad_to={pad_to}")
            ids += [PAD_ID] * (pad_to - len(ids))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Space-joined tokens up to the first ``<eos>``; ``<pad>`` and ``<sos>`` are skipped."""
        tokens = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == EOS_ID:
                break
            if token_id in (PAD_ID, SOS_ID):
                continue
            tokens.append(self.id_to_token[token_id] if token_id < len(self) else UNK)
        return " ".join(tokens)

    def unknown_report(self) -> str:
        """How many unknown tokens ``encode`` has met, most frequent first."""
        if not self.unknown_counts:
            return "no unknown tokens"
        top = ", ".join(f"{t} ({n})" for t, n in self.unknown_counts.most_common(10))
        return f"{sum(self.unknown_counts.values())} unknown tokens: {top}"

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (a list of tokens in id order)."""
        Path(path).write_text(json.dumps({"tokens": self.id_to_token}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        try:
            tokens = json.loads(path.read_text())["tokens"]
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: vocabulary file not found") from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a vocabulary file ({error})") from None
        return cls(tokens)
