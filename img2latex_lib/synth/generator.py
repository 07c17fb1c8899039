"""Generating formulas: :class:`FormulaGenerator` draws from the grammar with the fitted
statistics; :func:`generate_formulas` is the one-call API."""

from __future__ import annotations

import json
import math
import random

from ..tokenizer import MAX_LEN, normalize
from .grammar import (
    BEFORE_OPERAND,
    CATEGORIES,
    FUNCTION_COMMAND,
    KIND_COST,
    LEAF_KINDS,
    REUSE_POOL,
    REUSED,
    SCRIPT_CONTEXT,
    SCRIPTABLE,
    SCRIPTS,
    room_bucket,
)
from .stats import LENGTH_BIN, STATS_VERSION, default_statistics
from .width import MAX_WIDTH_PT, estimate_width

#: Deepest nesting of structures; an item deeper than this is a leaf (a letter, a symbol...).
MAX_DEPTH = 5


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
            if estimate_width(tokens) <= MAX_WIDTH_PT:
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
        real = self.stats["kinds"].get(f"{ctx}/{room_bucket(left)}") or self.stats["kinds"].get(
            f"main/{room_bucket(left)}", {}
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
        patterns = self.stats["script_patterns"].get(f"{ctx}/{kind}/{room_bucket(left)}", {})
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
