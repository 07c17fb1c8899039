"""The balance constraint on decoding: what may come next so that a formula stays well formed.

`BalanceConstraint` keeps, per hypothesis, a small stack of what is open (braces, ``\\left``,
environments, array column specs) and the current atom's scripts, and rules out the tokens
that would break them: a closing that matches nothing, ``<eos>`` while something is open, a
second superscript, a ``&`` beyond an array's columns, and more (see the class). Written with
an array namespace ``xp`` (numpy, or ``keras.ops`` inside compiled decoding loops); the numpy
path imports no Keras, so runtimes without TensorFlow (``runtime``) use it too.
"""

from __future__ import annotations

import numpy as np

from .tokenizer import EOS_ID, PAD_ID, Vocab


def _keras_ops():
    """``keras.ops``, imported only where a compiled loop asks for it (``xp=None``)."""
    from keras import ops

    return ops


def _balance_kind(token: str) -> tuple[str, int] | None:
    """(kind, +1 opens / -1 closes) of a token that must be balanced: ``"{"`` braces,
    ``"\\left"`` delimiters, ``"\\begin{name}"`` each environment (``"\\begin"`` a bare one);
    None for any other token."""
    if token in ("{", "}"):
        return "{", 1 if token == "{" else -1
    for prefix, delta in (("\\left", 1), ("\\right", -1)):  # \left( yes, \leftarrow no
        rest = token[len(prefix):]
        if token.startswith(prefix) and (not rest or not rest[0].isalpha()):
            return "\\left", delta
    for prefix, delta in (("\\begin", 1), ("\\end", -1)):
        rest = token[len(prefix):]
        if token.startswith(prefix) and (not rest or rest.startswith("{")):
            return "\\begin" + rest, delta
    return None


#: Tokens that end an array row, and the column letters of an array's spec (``{ c c l }``).
ROW_ENDS, COLUMN_LETTERS = ("\\\\", "\\cr"), ("c", "l", "r", "p")
#: What else a spec may hold, and how many brace groups each spec token takes (``p{3cm}``,
#: ``@{}``, ``*{3}{c}``).
SPEC_MARKS, SPEC_ARGUMENTS = ("|", "@", "*"), {"p": 1, "@": 1, "*": 2}
_LIMIT = 64  # tabs and columns counted per array, at most
# Script bits of a group's current atom: has a superscript, a subscript, waits for a script's
# argument.
_SUP, _SUB, _WAITING = 1, 2, 4


class BalanceConstraint:
    """Rules out tokens that would stop a formula compiling, keeping the model's best allowed one.

    - Balanced and properly nested: a closing brace, ``\\right…`` or ``\\end{name}`` only where
      the innermost open thing is of its kind (``\\end{array}`` closes only ``\\begin{array}``);
      no <eos> while something is still open. Where the model would end the formula with
      something open, only the closer of the innermost open kind is allowed.
    - ``&`` and row ends only directly inside an environment (not in a brace group or a
      ``\\left…\\right`` pair inside it), and no more ``&`` in an array row than its column
      spec allows (``\\begin{array} { c c }``: one). The spec itself holds only column letters,
      ``|``, ``@`` and ``*``, each with the brace groups it takes (``p { 3 c m }``).
    - No double superscript or subscript: one ``^`` and one ``_`` per atom (``x _ { i } _ { j }``
      is ruled out at its second ``_``), none right after another, no ``'`` after a ``^``; a
      ``^`` or ``_`` gets its argument before anything closes or the formula ends.
    - Everything closes before the token limit: with ``room`` tokens left, nothing opens (and
      no ``^``/``_`` comes) unless there is room to close it, and once the room left is what the
      open things need, only the innermost closer is allowed.

    These were, in that order, the commonest reasons a prediction did not compile. The decoder
    keeps, for each formula, a stack of what is open (``opened``: [B, 2 + depth] int32; column 0
    the number open, column 1 the formula's top level, columns 2… one per open thing, innermost
    last) and adds :meth:`penalty` to the log-probabilities. At ``depth`` open things, nothing
    more may open.

    Each level's value packs its kind with, for an array, how far its spec is read (0 just
    opened, 1 inside the spec's braces, 2 in the body), the ``&`` in its current row (while the
    spec is read: the brace groups its last token still takes) and its column count (0: unknown,
    no limit), and the script bits of its current atom:
    ``kind + K * (phase + 3 * (tabs + 64 * (columns + 64 * script)))``.
    """

    def __init__(self, vocab: Vocab, depth: int = 32):
        found = {index: _balance_kind(token) for index, token in enumerate(vocab.id_to_token)}
        #: Kind names, index = kind id (0: not a balanced token).
        self.kinds = ["", *sorted({kind for kind, _ in filter(None, found.values())})]
        ids = {kind: k for k, kind in enumerate(self.kinds)}
        #: The kind each token opens and closes (0: none), [V] int32 each.
        self.opens, self.closes = (
            np.array([ids[f[0]] if f and f[1] == sign else 0
                      for f in (found[i] for i in range(len(vocab)))], np.int32)
            for sign in (1, -1))
        self.brace, self.array = ids.get("{", -1), ids.get("\\begin{array}", -1)
        #: Per kind [K] bool: an environment (where ``&`` and row ends belong).
        self.environment = np.array([kind.startswith("\\begin") for kind in self.kinds])

        def marks(tokens) -> np.ndarray:
            return np.isin(np.arange(len(vocab)),
                           [vocab.token_to_id[t] for t in tokens if t in vocab.token_to_id])

        #: Per token [V] bool: ``&``, a row end, a column letter, ``^``, ``_``, ``'``.
        self.tab, self.row_end, self.column = marks(["&"]), marks(ROW_ENDS), marks(COLUMN_LETTERS)
        self.sup, self.sub, self.prime = marks(["^"]), marks(["_"]), marks(["'"])
        #: Per token [V]: may stand in an array's spec (bool); brace groups it takes there (int).
        self.spec = marks(COLUMN_LETTERS + SPEC_MARKS)
        self.arguments = np.array([SPEC_ARGUMENTS.get(t, 0) for t in vocab.id_to_token],
                                  np.int32)
        self.depth = depth
        k = len(self.kinds)
        #: What one unit of each packed field is worth.
        self._phase, self._tabs, self._columns, self._script = k, 3 * k, 3 * k * _LIMIT, \
            3 * k * _LIMIT * _LIMIT

    def nothing_open(self, batch: int, xp=np):
        """The ``opened`` state of ``batch`` formulas before their first token."""
        return xp.zeros((batch, self.depth + 2), "int32")

    def _tables(self, xp):
        tables = (self.opens, self.closes, self.tab, self.row_end, self.column, self.sup,
                  self.sub, self.prime, self.spec, self.arguments)
        if xp is np:
            return tables
        return tuple(_keras_ops().convert_to_tensor(t) for t in tables)

    def _fields(self, value, xp):
        """(kind, phase, tabs, columns, script) of packed stack values."""
        return (xp.mod(value, self._phase), xp.mod(xp.floor_divide(value, self._phase), 3),
                xp.mod(xp.floor_divide(value, self._tabs), _LIMIT),
                xp.mod(xp.floor_divide(value, self._columns), _LIMIT),
                xp.floor_divide(value, self._script))

    @staticmethod
    def _bit(script, bit: int, xp):
        return xp.mod(xp.floor_divide(script, bit), 2) > 0

    def _script_after(self, script, token, xp):
        """The innermost group's script bits after the next token, described by ``token``: its
        [B] bool masks ``sup``, ``sub`` and ``prime``. A prime keeps the atom (``x'^2``)."""
        waiting = self._bit(script, _WAITING, xp)
        kept = script - xp.where(waiting, _WAITING, 0)  # the token is the script's argument
        plain = xp.where(waiting, kept, 0)  # … or it starts a new atom
        for mask, bit in ((token["sup"], _SUP), (token["sub"], _SUB)):
            plain = xp.where(mask, xp.bitwise_or(script, bit | _WAITING), plain)
        return xp.where(token["prime"], kept, plain)

    def _at(self, opened, index, xp):
        return xp.take_along_axis(opened, index[:, None], axis=1)[:, 0]

    def update(self, opened, tokens, xp=None):
        """``opened`` after ``tokens`` [B]; ``xp`` as for :meth:`penalty`."""
        xp = xp or _keras_ops()
        opens, closes, *marks = self._tables(xp)
        token = dict(zip(("tab", "row_end", "column", "sup", "sub", "prime", "spec",
                          "arguments"),
                         (xp.take(m, tokens, axis=0) for m in marks), strict=True))
        kind, closed = xp.take(opens, tokens, axis=0), xp.take(closes, tokens, axis=0) > 0
        count = opened[:, 0]
        # the innermost group (column count + 1) and the one it is in
        top, below = self._at(opened, count + 1, xp), self._at(opened, count, xp)
        top_kind, top_phase, top_tabs, _, top_script = self._fields(top, xp)
        below_kind, below_phase, below_tabs, below_columns, _ = self._fields(below, xp)
        # an array reads its spec, then counts the tabs of each row
        array_top = xp.equal(top_kind, self.array)
        starts = xp.logical_and(array_top, xp.equal(top_phase, 0))
        body = xp.logical_and(array_top, xp.equal(top_phase, 2))
        top = top + self._phase * xp.where(starts, xp.where(xp.equal(kind, self.brace), 1, 2), 0)
        top = top + self._tabs * xp.where(
            xp.logical_and(body, xp.logical_and(token["tab"], top_tabs < _LIMIT - 1)), 1,
            xp.where(xp.logical_and(body, token["row_end"]), -top_tabs, 0))
        script = xp.where(xp.equal(tokens, PAD_ID), top_script,  # padding changes nothing
                          self._script_after(top_script, token, xp))
        top = top + self._script * (script - top_script)
        spec = xp.logical_and(xp.equal(top_kind, self.brace),
                              xp.logical_and(xp.equal(below_kind, self.array),
                                             xp.equal(below_phase, 1)))
        below = below + xp.where(
            xp.logical_and(spec, xp.logical_and(token["column"], below_columns < _LIMIT - 1)),
            self._columns, 0)
        below = below + xp.where(xp.logical_and(spec, closed), self._phase, 0)  # spec read
        # while the spec is read, its tabs field holds the brace groups its last token still takes
        waiting = xp.where(xp.equal(kind, self.brace), xp.maximum(below_tabs - 1, 0),
                           token["arguments"])
        waiting = xp.where(xp.equal(tokens, PAD_ID), below_tabs, waiting)
        below = below + xp.where(spec, self._tabs * (waiting - below_tabs), 0)
        position = xp.arange(self.depth + 2)[None]
        opened = xp.where(xp.equal(position, (count + 1)[:, None]), top[:, None], opened)
        opened = xp.where(xp.logical_and(position > 1, xp.equal(position, count[:, None])),
                          below[:, None], opened)
        pushed = xp.logical_and(xp.equal(position, (count + 2)[:, None]), (kind > 0)[:, None])
        opened = xp.where(pushed, kind[:, None], opened)
        count = count + xp.where(kind > 0, 1, 0) - xp.where(closed, 1, 0)
        return xp.where(xp.equal(position, 0), xp.maximum(count, 0)[:, None], opened)

    def penalty(self, opened, logits, xp=None, room=None):
        """0 for the tokens allowed after ``opened`` [B, 2 + depth] when the model scores the next
        token with ``logits`` [B, V]; -1e9 for ruled-out ones. [B, V] float32.

        ``room``: how many tokens may still come before <eos> is forced (None: no limit).
        ``xp`` is ``keras.ops`` (inside compiled loops; the default, None) or ``numpy``
        (host-side decoding, where eager tensor ops would cost more than the decoder step).
        """
        xp = xp or _keras_ops()
        opens, closes, tab, row_end, _, sup, sub, prime, spec, arguments = (
            t[None] for t in self._tables(xp))  # [1, V] each
        count = opened[:, :1]  # [B, 1]
        innermost, phase, tabs, columns, script = self._fields(
            xp.take_along_axis(opened, count + 1, axis=1), xp)  # kind 0 when nothing is open
        still_open = count > 0
        is_eos = xp.equal(xp.arange(len(self.opens)), EOS_ID)[None]  # [1, V]
        wants_eos = xp.equal(xp.argmax(logits, axis=-1), EOS_ID)[:, None]  # [B, 1]
        closes_innermost = xp.logical_and(closes > 0, xp.equal(closes, innermost))
        blocked = xp.logical_or(xp.logical_and(closes > 0, xp.logical_not(closes_innermost)),
                                xp.logical_and(still_open, is_eos))
        grows = xp.logical_or(opens > 0, xp.logical_or(sup, sub))  # needs a token more later
        blocked = xp.logical_or(blocked, xp.logical_and(opens > 0, count >= self.depth))
        waiting = self._bit(script, _WAITING, xp)  # a ^ or _ without its argument yet
        ends = xp.logical_or(xp.logical_or(closes > 0, is_eos), xp.logical_or(tab, row_end))
        blocked = xp.logical_or(blocked, xp.logical_and(waiting, ends))  # x ^ } / x ^ <eos>
        closing_time = xp.logical_and(still_open,
                                      xp.logical_and(wants_eos, xp.logical_not(waiting)))
        if room is not None:  # an opener (or a script) and its closer (argument) must fit
            blocked = xp.logical_or(blocked, xp.logical_and(grows, count + 2 > room))
            closing_time = xp.logical_or(closing_time, xp.logical_and(still_open, count >= room))
        blocked = xp.logical_or(blocked, xp.logical_and(closing_time,
                                                        xp.logical_not(closes_innermost)))
        environment = (self.environment if xp is np
                       else _keras_ops().convert_to_tensor(self.environment))
        outside = xp.logical_not(xp.take(environment, innermost, axis=0))  # [B, 1]
        blocked = xp.logical_or(blocked, xp.logical_and(outside, xp.logical_or(tab, row_end)))
        row_full = xp.logical_and(
            xp.equal(innermost, self.array),
            xp.logical_and(xp.logical_and(xp.equal(phase, 2), columns > 0), tabs >= columns - 1))
        blocked = xp.logical_or(blocked, xp.logical_and(row_full, tab))
        for mask, taken in ((sup, xp.logical_or(waiting, self._bit(script, _SUP, xp))),
                            (sub, xp.logical_or(waiting, self._bit(script, _SUB, xp))),
                            (prime, self._bit(script, _SUP, xp))):
            blocked = xp.logical_or(blocked, xp.logical_and(taken, mask))
        # an array's spec holds only column letters, | @ * and the brace groups they take
        below_kind, below_phase, waits_for, _, _ = self._fields(
            xp.take_along_axis(opened, count, axis=1), xp)  # the level around the innermost
        in_spec = xp.logical_and(xp.equal(innermost, self.brace), xp.logical_and(
            xp.equal(below_kind, self.array), xp.equal(below_phase, 1)))
        group = xp.equal(opens, self.brace)
        blocked = xp.logical_or(blocked, xp.logical_and(
            in_spec, xp.logical_not(xp.logical_or(spec, closes > 0))))
        # p @ * only where their brace groups may open, and (with room) close in time: the
        # token, a { and a } per group, and a closer per open thing
        for groups in set(SPEC_ARGUMENTS.values()):
            no_room = count >= self.depth
            if room is not None:
                no_room = xp.logical_or(no_room, count + 1 + 2 * groups > room)
            blocked = xp.logical_or(blocked, xp.logical_and(
                xp.logical_and(in_spec, xp.equal(arguments, groups)), no_room))
        # a spec token waiting for its brace group gets it, whatever else holds
        blocked = xp.where(xp.logical_and(in_spec, waits_for > 0), xp.logical_not(group), blocked)
        return xp.where(blocked, -1e9, 0.0)
