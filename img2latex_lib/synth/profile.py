"""Counting the structure of formulas: :class:`Profile` walks tokenized formulas the way the
grammar writes them and keeps the counts (kinds, scripts, tokens, lengths, choices) that the
statistics are made of, for real formulas and generated ones alike."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from ..tokenizer import MAX_LEN, _atom_end, _group_end, normalize, tokenize
from .grammar import (
    CATEGORY_OF,
    CONNECTORS,
    FUNCTION_COMMAND,
    FUNCTION_NAMES,
    KIND_COST,
    LEAF_KINDS,
    LEFT_TOKENS,
    OPERATOR_COMMANDS,
    PLAIN_PAIRS,
    REUSE_POOL,
    REUSED,
    RIGHT_TOKENS,
    SCRIPT_CONTEXT,
    SCRIPTABLE,
    SCRIPTS,
    WORD_COMMANDS,
    argument_span,
    closing_index,
    room_bucket,
)


class Profile:
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
                base = f"{ctx}/{self.last}/{room_bucket(end - i)}"
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
                    self.starts[f"{ctx}/{room_bucket(room)}"][self.last] += 1
                if self.last in SCRIPTABLE:
                    self.bases[f"{ctx}/{self.last}/{room_bucket(end - i)}"] += 1

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
            after = self._walk_content(tokens, argument_span(tokens, i + 1), "frac", "arg")
            after = self._walk_content(tokens, argument_span(tokens, after), "frac", "arg")
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
            i = self._walk_content(tokens, argument_span(tokens, i + 1), role or context, context)
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
        first, end, after = argument_span(tokens, i + 1)
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
        after = self._walk_content(tokens, argument_span(tokens, i), "sqrt", "arg")
        self._event("sqrt", ctx)
        return after

    def _delimited(self, tokens, i: int, end: int, ctx: str, opens, closes, kind: str) -> int:
        close = closing_index(tokens, i, end, opens, closes)
        if close < 0:  # unmatched delimiter: not a structure the grammar writes
            self.last = ""
            return i + 1
        self.choices[kind][f"{tokens[i]} {tokens[close]}"] += 1
        if kind == "left":
            inside = tokens[i + 1] == r"\begin{array}" and (
                closing_index(tokens, i + 1, close, {r"\begin{array}"}, {r"\end{array}"})
                == close - 1
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
        close = closing_index(tokens, i, end, {r"\begin{array}"}, {r"\end{array}"})
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
            key: {"": n - self.scripted[key].total()} | counts_json(self.scripted[key])
            for key, n in sorted(self.bases.items())
        }

    def presence(self) -> dict[str, float]:
        """Share of formulas that have each kind (in any context)."""
        return {kind: n / max(self.formulas, 1) for kind, n in sorted(self.present.items())}


def profile_formulas(formulas: Iterable[str]) -> Profile:
    """A :class:`Profile` of ``formulas``, each normalized and tokenized (empty ones skipped)."""
    profile = Profile()
    for formula in formulas:
        tokens = tokenize(normalize(formula))
        if tokens:
            profile.add(tokens)
    return profile


def counts_json(counter: Counter, keep: int | None = None) -> dict[str, int]:
    """A counter as a JSON object with string keys, most frequent first (top ``keep``)."""
    return {str(k): n for k, n in counter.most_common(keep)}


def _letters(tokens: Sequence[str]) -> str | None:
    """``s i n`` -> ``sin`` when every token is one ASCII letter and there are at least two."""
    if len(tokens) >= 2 and all(len(t) == 1 and t.isascii() and t.isalpha() for t in tokens):
        return "".join(tokens)
    return None


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
