"""What the formula grammar writes: its token tables, the kinds of item it chooses between,
the contexts an item stands in, and the token-walking helpers the rest of the package shares.

Only tokens that compile in LaTeX's article class without extra packages.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..tokenizer import LIMIT_OPERATORS, OPERATORS, _atom_end, _group_end

#: normalize() spells ``\sin`` as im2latex does, ``\operatorname { s i n }``, which needs amsmath
#: (absent from the im2latex template); ``\mathrm { s i n }`` gives the same upright letters.
FUNCTION_COMMAND = r"\mathrm"
#: Where an item stands: top level (and inside delimiters), subscript, superscript, argument of
#: a fraction, root, accent or font, array cell.
CONTEXTS = ("main", "sub", "sup", "arg", "cell")

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


def argument_span(tokens: Sequence[str], start: int) -> tuple[int, int, int]:
    """(first, end, next) of the argument at ``start``: inside its braces if it is a group."""
    if start < len(tokens) and tokens[start] == "{":
        end = _group_end(tokens, start)
        return start + 1, end - 1, end
    end = _atom_end(tokens, start)
    return start, end, end


def closing_index(
    tokens: Sequence[str], start: int, end: int, opens: Collection[str], closes: Collection[str]
) -> int:
    """Index of the token that closes the one at ``start`` (nesting counted, groups skipped);
    -1 if none before ``end``."""
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


def room_bucket(tokens_left: int) -> str:
    """Bucket of the tokens left for an item and what follows it in its group."""
    return next((str(b) for b in (1, 2, 3, 4, 5, 6, 7, 8, 12, 24) if tokens_left <= b), "more")
