"""Greedy, beam and sampled decoding with the encoder run once and the GRU stepped with its state,
and ``LatexProducer``, which turns image files into LaTeX with a trained checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from .tokenizer import EOS_ID, PAD_ID, SOS_ID, Vocab


def compile_fn(fn: Callable) -> Callable:
    """Compile a pure tensor function with the active backend's tracer (graph or jit)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


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
        return tuple(ops.convert_to_tensor(t) for t in tables) if xp is ops else tables

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

    def update(self, opened, tokens, xp=ops):
        """``opened`` after ``tokens`` [B]; ``xp`` as for :meth:`penalty`."""
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

    def penalty(self, opened, logits, xp=ops, room=None):
        """0 for the tokens allowed after ``opened`` [B, 2 + depth] when the model scores the next
        token with ``logits`` [B, V]; -1e9 for ruled-out ones. [B, V] float32.

        ``room``: how many tokens may still come before <eos> is forced (None: no limit).
        ``xp`` is ``keras.ops`` (inside compiled loops) or ``numpy`` (host-side decoding, where
        eager tensor ops would cost more than the decoder step).
        """
        opens, closes, tab, row_end, _, sup, sub, prime, spec, _ = (
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
        environment = self.environment if xp is np else ops.convert_to_tensor(self.environment)
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
        # a spec token waiting for its brace group gets it, whatever else holds
        blocked = xp.where(xp.logical_and(in_spec, waits_for > 0), xp.logical_not(group), blocked)
        return xp.where(blocked, -1e9, 0.0)


class StepDecoder:
    """Runs the encoder once and the decoder one token at a time (compiled, O(1) per step).

    The encoder's output is kept as the attention's keys and values (``Decoder.memory``), so a
    step projects only its own query: at batch 32 that made a greedy step about 3x cheaper.
    With a ``constraint`` every decoding (greedy, sampled, beam) keeps formulas balanced.
    """

    def __init__(self, model, constraint: BalanceConstraint | None = None):
        self.model, self.constraint = model, constraint
        self._encode = compile_fn(self._memory)
        self._step = compile_fn(self._step_fn)
        self._greedy: dict[int, Callable] = {}

    def _memory(self, images):
        return self.model.decoder.memory(self.model.encoder(images, training=False))

    def _step_fn(self, tokens, state, memory):
        logits, state, scores = self.model.decoder.attend(
            tokens[:, None], memory, state=state, training=False, return_attention=True)
        log_probs = ops.log_softmax(ops.cast(logits[:, 0], "float32"), axis=-1)
        return log_probs, state, ops.mean(scores[:, :, 0], axis=1)

    def encode(self, images: np.ndarray, repeat: int = 1):
        """The decoder's memory of a batch of images; ``repeat`` copies each image's (beams)."""
        memory = self._encode(ops.convert_to_tensor(images, dtype="float32"))
        if repeat > 1:
            memory = tuple(ops.repeat(part, repeat, axis=0) for part in memory)
        return memory

    def greedy_ids(self, images: np.ndarray, max_len: int) -> np.ndarray:
        """Greedy token ids [B, max_len + 1] for a batch, the whole loop compiled (no Python per
        token); each row ends with <eos>, then zeros. Same choices as :func:`greedy`."""
        if max_len not in self._greedy:
            self._greedy[max_len] = compile_fn(lambda x: self._greedy_loop(x, max_len))
        ids = self._greedy[max_len](ops.convert_to_tensor(images, dtype="float32"))
        return ops.convert_to_numpy(ids)

    def _greedy_loop(self, images, max_len: int):
        memory = self._memory(images)
        batch = ops.shape(images)[0]
        length = max_len + 1

        constraint = self.constraint

        def running(step, tokens, state, out, done, opened):
            return ops.logical_and(step < length, ops.logical_not(ops.all(done)))

        def advance(step, tokens, state, out, done, opened):
            logits, state = self.model.decoder.attend(tokens[:, None], memory, state=state,
                                                      training=False)
            logits = ops.cast(logits[:, 0], "float32")
            if constraint is not None:
                logits = logits + constraint.penalty(opened, logits, room=max_len - step)
            chosen = ops.cast(ops.argmax(logits, axis=-1), "int32")
            chosen = ops.where(ops.equal(step, max_len), EOS_ID, chosen)  # the last step allowed
            chosen = ops.where(done, 0, chosen)
            if constraint is not None:
                opened = constraint.update(opened, chosen)
            column = ops.cast(ops.equal(ops.arange(length), step), "int32")
            out = out + chosen[:, None] * column[None, :]
            done = ops.logical_or(done, ops.equal(chosen, EOS_ID))
            return step + 1, chosen, state, out, done, opened

        start = (ops.convert_to_tensor(0, "int32"), ops.full((batch,), SOS_ID, "int32"),
                 self.model.initial_state(batch), ops.zeros((batch, length), "int32"),
                 ops.zeros((batch,), "bool"), self.nothing_open(batch, xp=ops))
        return ops.while_loop(running, advance, start)[3]

    def step(self, tokens: np.ndarray, state, memory, room: int | None = None,
             opened: np.ndarray | None = None):
        """Log-probabilities [B, V], new state, attention over encoded positions [B, N].

        ``room``: how many tokens may still come before <eos> (None: no limit); at 0, <eos> is
        the only possible token. With the constraint's ``opened`` state (see
        :meth:`opened_after`), ruled-out tokens get -inf.
        """
        log_probs, state, attention = self._step(
            ops.convert_to_tensor(tokens, dtype="int32"), state, memory)
        log_probs = ops.convert_to_numpy(log_probs)
        if self.constraint is not None and opened is not None:
            blocked = self.constraint.penalty(opened, log_probs, xp=np, room=room) < 0
            log_probs = np.where(blocked, -np.inf, log_probs)
        if room == 0:
            log_probs = np.where(np.arange(log_probs.shape[-1]) == EOS_ID, 0.0, -np.inf)
            log_probs = np.broadcast_to(log_probs, (len(tokens), log_probs.shape[-1]))
        return log_probs, state, attention

    def initial_state(self, batch: int):
        return self.model.initial_state(batch)

    def nothing_open(self, batch: int, xp=np):
        """The constraint's ``opened`` state before the first token ([B, 1] zeros without one)."""
        if self.constraint is None:
            return xp.zeros((batch, 1), "int32")
        return self.constraint.nothing_open(batch, xp)

    def opened_after(self, opened: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The constraint's ``opened`` state after ``tokens`` (unchanged without one)."""
        if self.constraint is None:
            return opened
        return self.constraint.update(opened, tokens, xp=np)


@dataclass
class Hypothesis:
    """A decoded token id sequence (without <sos>/<eos>), its log-probability and score."""

    ids: list[int]
    log_prob: float
    score: float


def greedy(
    decoder: StepDecoder,
    images: np.ndarray,
    max_len: int,
    temperature: float | None = None,
    rng: np.random.Generator | None = None,
    return_attention: bool = False,
):
    """Most likely (or, with ``temperature``, sampled) token at each step, for a batch.

    Returns one id list per image and, if asked, attention [steps, N] per image.
    """
    if not temperature and not return_attention:
        rows = decoder.greedy_ids(images, max_len)
        return [[int(t) for t in row[: list(row).index(EOS_ID)]] for row in rows]
    batch = len(images)
    memory = decoder.encode(images)
    state = decoder.initial_state(batch)
    tokens = np.full(batch, SOS_ID, dtype=np.int32)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    attentions: list[list[np.ndarray]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    opened = decoder.nothing_open(batch)
    rng = rng or np.random.default_rng()
    for step in range(max_len + 1):
        log_probs, state, attention = decoder.step(tokens, state, memory, max_len - step,
                                                   opened)
        if temperature:
            probs = np.exp((log_probs - log_probs.max(-1, keepdims=True)) / temperature)
            probs /= probs.sum(-1, keepdims=True)
            tokens = np.array([rng.choice(len(p), p=p) for p in probs], dtype=np.int32)
        else:
            tokens = log_probs.argmax(-1).astype(np.int32)
        opened = decoder.opened_after(opened, np.where(done, 0, tokens))
        if return_attention:
            attention = ops.convert_to_numpy(attention)
        for i in np.flatnonzero(~done):
            if tokens[i] == EOS_ID:
                done[i] = True
            else:
                outputs[i].append(int(tokens[i]))
                if return_attention:
                    attentions[i].append(attention[i])
        if done.all():
            break
    if return_attention:
        return outputs, [np.array(a) for a in attentions]
    return outputs


def beam_search(
    decoder: StepDecoder,
    images: np.ndarray,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
) -> list[list[Hypothesis]]:
    """Length-normalised beam search for a batch; returns the n-best list of each image.

    The score of a finished hypothesis is ``log_prob / (length + 1) ** length_penalty`` (the
    ``+ 1`` counts <eos>). A hypothesis ends at <eos> (forced after ``max_len`` tokens); an
    image is done when ``beam_size`` of its hypotheses have ended, so beam 1 is exactly greedy.
    """
    batch, k = len(images), beam_size
    memory = decoder.encode(images, repeat=k)
    state = decoder.initial_state(batch * k)
    tokens = np.full(batch * k, SOS_ID, dtype=np.int32)
    scores = np.tile(np.array([0.0] + [-np.inf] * (k - 1)), batch)  # one live beam at first
    histories: list[list[int]] = [[] for _ in range(batch * k)]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    opened = decoder.nothing_open(batch * k)

    def finish(image: int, ids: list[int], log_prob: float) -> None:
        finished[image].append(
            Hypothesis(ids, log_prob, log_prob / (len(ids) + 1) ** length_penalty))

    for step in range(max_len + 1):
        log_probs, state, _ = decoder.step(tokens, state, memory, max_len - step, opened)
        vocab_size = log_probs.shape[-1]
        candidates = (scores[:, None] + log_probs).reshape(batch, k * vocab_size)
        top = np.argsort(-candidates, axis=1, kind="stable")[:, : 2 * k]
        new_rows, new_tokens, new_scores = [], [], []
        for image in range(batch):
            rows, chosen = [], 0
            for rank, flat in enumerate(top[image]):
                if done[image] or chosen == k:
                    break
                beam, token = divmod(int(flat), vocab_size)
                row = image * k + beam
                value = float(candidates[image, flat])
                if value == -np.inf:
                    break
                if token == EOS_ID:
                    if rank < k:
                        finish(image, histories[row], value)
                    continue
                rows.append((row, token, value))
                chosen += 1
            if len(finished[image]) >= k:
                done[image] = True
            while len(rows) < k:  # done image, or too few candidates: pad with dead beams
                rows.append((image * k, EOS_ID, -np.inf))
            for row, token, value in rows:
                new_rows.append(row)
                new_tokens.append(token)
                new_scores.append(value)
        if done.all():
            break
        order = np.array(new_rows)
        state = ops.take(state, ops.convert_to_tensor(order, dtype="int32"), axis=0)
        histories = [histories[row] + [token] for row, token in zip(order, new_tokens, strict=True)]
        tokens = np.array(new_tokens, dtype=np.int32)
        opened = decoder.opened_after(opened[order], tokens)
        scores = np.array(new_scores)
    for image in range(batch):
        finished[image].sort(key=lambda h: -h.score)
        finished[image] = finished[image][:k]
    return finished


class LatexProducer:
    """Image(s) -> LaTeX with a trained checkpoint (the shipped one by default)."""

    def __init__(self, checkpoint_dir: str | Path | None = None, verbose: bool = False,
                 balanced: bool = True, companions: Sequence[str | Path] = ()):
        """``balanced``: decode under :class:`BalanceConstraint` (braces, ``\\left``/``\\right``
        and environments always close). ``companions``: checkpoints whose beams add candidates
        to ``predict(..., rerank=True)`` (:meth:`candidate_lists`)."""
        from .checkpoints import default_checkpoint, load_from_checkpoint

        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint()
        self.model, self.vocab, self.config = load_from_checkpoint(
            self.checkpoint_dir, verbose=verbose)
        self.decoder = StepDecoder(self.model, BalanceConstraint(self.vocab) if balanced else None)
        self.companions = [LatexProducer(path, verbose, balanced) for path in companions]
        self._reranker = None

    @classmethod
    def from_model(cls, model, vocab: Vocab, balanced: bool = True) -> LatexProducer:
        """Wrap a model in memory (e.g. during training) without a checkpoint on disk."""
        producer = cls.__new__(cls)
        producer.checkpoint_dir = None
        producer.model, producer.vocab, producer.config = model, vocab, model.config
        producer.decoder = StepDecoder(model, BalanceConstraint(vocab) if balanced else None)
        producer.companions, producer._reranker = [], None
        return producer

    def prepare(self, images: Sequence) -> list[np.ndarray]:
        """Preprocess image files, bytes, PIL images or arrays into model inputs."""
        from .preprocess import prepare_image

        c = self.config
        return [prepare_image(image, height=c.image_height, max_width=c.max_width,
                              width_step=c.width_step) for image in images]

    def _batches(self, images: Sequence, batch_size: int):
        """(indices, batch) pairs; a batch holds images of one width bucket, so no padding is
        added and an image gets the same result alone or in a batch."""
        arrays = self.prepare(images)
        by_width: dict[int, list[int]] = {}
        for index, array in enumerate(arrays):
            by_width.setdefault(array.shape[1], []).append(index)
        for indices in by_width.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                yield chunk, np.stack([arrays[i] for i in chunk])

    def predict(
        self,
        images,
        beam_size: int = 1,
        temperature: float | None = None,
        batch_size: int = 16,
        render: bool = False,
        seed: int | None = None,
        rerank: bool = False,
        companions: bool = True,
    ):
        """LaTeX for one image (a str) or a list of images (a list of str, in the given order).

        ``beam_size > 1`` uses beam search, ``temperature`` samples instead of the argmax.
        ``rerank=True`` (with beam search) renders the beam's candidates (and, unless
        ``companions=False``, the companions') and keeps the one that reproduces the image
        (:class:`rerank.RenderReranker`; needs pdflatex). With
        ``render=True`` a single image returns ``(latex, figure)``: the input above the rendered
        prediction.
        """
        single = not isinstance(images, list | tuple)
        items = [images] if single else list(images)
        if rerank:
            results = self._reranked(items, beam_size, batch_size, companions)
        else:
            results = self._decoded(items, beam_size, temperature, batch_size, seed)
        if render:
            from .render import prediction_figure

            if not single:
                raise ValueError("render=True works with one image at a time")
            return results[0], prediction_figure(items[0], results[0])
        return results[0] if single else results

    def _decoded(self, items: list, beam_size: int, temperature: float | None,
                 batch_size: int, seed: int | None) -> list[str]:
        results = [""] * len(items)
        rng = np.random.default_rng(seed)
        for chunk, batch in self._batches(items, batch_size):
            if beam_size > 1:
                decoded = [nbest[0].ids for nbest in beam_search(
                    self.decoder, batch, beam_size, self.config.max_len)]
            else:
                decoded = greedy(self.decoder, batch, self.config.max_len, temperature, rng)
            for index, ids in zip(chunk, decoded, strict=True):
                results[index] = self.vocab.decode(ids)
        return results

    def _reranked(self, items: list, beam_size: int, batch_size: int,
                  companions: bool) -> list[str]:
        if beam_size < 2:
            raise ValueError(f"rerank chooses among a beam's candidates: it needs a beam size "
                             f"of 2 or more, got {beam_size}")
        if self._reranker is None:
            from .rerank import RenderReranker

            self._reranker = RenderReranker()
        return self._reranker.choose(
            items, self.candidate_lists(items, beam_size, batch_size, companions))

    def candidate_lists(self, images: Sequence, beam_size: int = 5, batch_size: int = 16,
                        companions: bool = True) -> list[list[str]]:
        """Each image's beam candidates, best-scored first, then (unless ``companions=False``)
        those of each companion's beam that are new (:func:`rerank.pooled`): what
        ``predict(..., rerank=True)`` chooses among."""
        from .rerank import pooled

        lists = [self.nbest_lists(images, beam_size, batch_size)] + [
            c.nbest_lists(images, beam_size, batch_size)
            for c in (self.companions if companions else [])]
        return [pooled(*([latex for latex, _ in n] for n in per_model))
                for per_model in zip(*lists, strict=True)]

    def nbest(self, image, beam_size: int = 5) -> list[tuple[str, float]]:
        """The beam's n-best list for one image: (latex, length-normalised score), best first."""
        return self.nbest_lists([image], beam_size)[0]

    def nbest_lists(self, images: Sequence, beam_size: int = 5,
                    batch_size: int = 16) -> list[list[tuple[str, float]]]:
        """:meth:`nbest` for each of several images, decoded in batches, in the given order."""
        lists: list[list[tuple[str, float]]] = [[] for _ in images]
        for chunk, batch in self._batches(images, batch_size):
            found = beam_search(self.decoder, batch, beam_size, self.config.max_len)
            for index, hypotheses in zip(chunk, found, strict=True):
                lists[index] = [(self.vocab.decode(h.ids), h.score) for h in hypotheses]
        return lists

    def attention(self, image) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Greedy tokens, attention maps [tokens, rows, cols] and the model input [H, W]."""
        (_, batch), = self._batches([image], 1)
        ids, maps = greedy(self.decoder, batch, self.config.max_len, return_attention=True)
        rows = self.config.image_height // self.config.stride
        maps = maps[0].reshape(len(ids[0]), rows, -1)
        return [self.vocab.id_to_token[i] for i in ids[0]], maps, batch[0, :, :, 0]
