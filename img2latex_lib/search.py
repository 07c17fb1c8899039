"""Greedy, sampled and beam search over any step decoder, with numpy only (no Keras).

A step decoder (:class:`StepDecoderBase`) runs a model's encoder once and its decoder one token
at a time; the Keras model (``decoding.StepDecoder``) and the ONNX export
(``runtime.OnnxStepDecoder``) are two, so both runtimes make the same choices with this code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .tokenizer import EOS_ID, SOS_ID

if TYPE_CHECKING:
    from .constraints import BalanceConstraint


class StepDecoderBase(ABC):
    """Encoder once, decoder a token at a time, under an optional :class:`BalanceConstraint`.

    A subclass supplies :meth:`encode`, :meth:`initial_state`, :meth:`select` and
    :meth:`_raw_step` (its decoder state and memory are its own business); it may compile a whole
    greedy loop in :meth:`greedy_ids`.
    """

    def __init__(self, constraint: BalanceConstraint | None = None):
        self.constraint = constraint

    @abstractmethod
    def encode(self, images: np.ndarray, repeat: int = 1) -> Any:
        """The decoder's memory of a batch of images; ``repeat`` copies each image's (beams)."""

    @abstractmethod
    def initial_state(self, batch: int) -> Any:
        """The decoder state before the first token of ``batch`` formulas."""

    @abstractmethod
    def select(self, state: Any, rows: np.ndarray) -> Any:
        """The state of the given rows (beam search's reordering), [len(rows), ...]."""

    @abstractmethod
    def _raw_step(self, tokens: np.ndarray, state: Any, memory: Any
                  ) -> tuple[np.ndarray, Any, np.ndarray]:
        """Unconstrained log-probabilities [B, V] (numpy), new state, attention [B, N] (numpy)."""

    def greedy_ids(self, images: np.ndarray, max_len: int) -> np.ndarray | None:
        """Greedy ids [B, max_len + 1] from a loop compiled whole (each row ends with <eos>, then
        zeros), or None where there is none and :func:`greedy` steps instead."""
        return None

    def step(self, tokens: np.ndarray, state: Any, memory: Any, room: int | None = None,
             opened: np.ndarray | None = None) -> tuple[np.ndarray, Any, np.ndarray]:
        """Log-probabilities [B, V], new state, attention over encoded positions [B, N].

        ``room``: how many tokens may still come before <eos> (None: no limit); at 0, <eos> is
        the only possible token. With the constraint's ``opened`` state (see
        :meth:`opened_after`), ruled-out tokens get -inf.
        """
        log_probs, state, attention = self._raw_step(tokens, state, memory)
        if self.constraint is not None and opened is not None:
            blocked = self.constraint.penalty(opened, log_probs, xp=np, room=room) < 0
            log_probs = np.where(blocked, -np.inf, log_probs)
        if room == 0:
            log_probs = np.where(np.arange(log_probs.shape[-1]) == EOS_ID, 0.0, -np.inf)
            log_probs = np.broadcast_to(log_probs, (len(tokens), log_probs.shape[-1]))
        return log_probs, state, attention

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
    decoder: StepDecoderBase,
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
        if rows is not None:
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
    decoder: StepDecoderBase,
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
        order = np.array(new_rows, dtype=np.int32)
        state = decoder.select(state, order)
        histories = [histories[row] + [token] for row, token in zip(order, new_tokens, strict=True)]
        tokens = np.array(new_tokens, dtype=np.int32)
        opened = decoder.opened_after(opened[order], tokens)
        scores = np.array(new_scores)
    for image in range(batch):
        finished[image].sort(key=lambda h: -h.score)
        finished[image] = finished[image][:k]
    return finished
