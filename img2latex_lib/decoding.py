"""Greedy, beam and sampled decoding with the encoder run once and the GRU stepped with its state,
and ``LatexProducer``, which turns image files into LaTeX with a trained checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from .constraints import BalanceConstraint
from .tokenizer import EOS_ID, SOS_ID, Vocab


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
                 balanced: bool = True, companions: Sequence[str | Path] = (),
                 rerank_styles: Sequence[str] = ("im2latex",)):
        """``balanced``: decode under :class:`BalanceConstraint` (braces, ``\\left``/``\\right``
        and environments always close). ``companions``: checkpoints whose beams add candidates
        to ``predict(..., rerank=True)`` (:meth:`candidate_lists`). ``rerank_styles``: the
        styles that check renders candidates in (:class:`rerank.RenderReranker`)."""
        from .checkpoints import default_checkpoint, load_from_checkpoint

        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint()
        self.model, self.vocab, self.config = load_from_checkpoint(
            self.checkpoint_dir, verbose=verbose)
        self.decoder = StepDecoder(self.model, BalanceConstraint(self.vocab) if balanced else None)
        self.companions = [LatexProducer(path, verbose, balanced) for path in companions]
        self.rerank_styles = tuple(rerank_styles)
        self._reranker = None

    @classmethod
    def from_model(cls, model, vocab: Vocab, balanced: bool = True) -> LatexProducer:
        """Wrap a model in memory (e.g. during training) without a checkpoint on disk."""
        producer = cls.__new__(cls)
        producer.checkpoint_dir = None
        producer.model, producer.vocab, producer.config = model, vocab, model.config
        producer.decoder = StepDecoder(model, BalanceConstraint(vocab) if balanced else None)
        producer.companions, producer._reranker = [], None
        producer.rerank_styles = ("im2latex",)
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

            self._reranker = RenderReranker(styles=self.rerank_styles)
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
