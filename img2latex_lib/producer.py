"""Image(s) -> LaTeX over any step decoder (Keras or ONNX): preprocessing, batches of one width
bucket, greedy, sampled or beam decoding, the render check and attention maps.

:class:`Producer` holds what does not depend on the runtime; ``decoding.LatexProducer`` (a Keras
checkpoint) and ``runtime.OnnxProducer`` (an ONNX export) only load their model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import Config
from .search import StepDecoderBase, beam_search, greedy
from .tokenizer import Vocab


class Producer:
    """Image(s) -> LaTeX with a step decoder, its vocabulary and its model's config."""

    def __init__(self, decoder: StepDecoderBase, vocab: Vocab, config: Config,
                 companions: Sequence[Producer] = (),
                 rerank_styles: Sequence[str] = ("im2latex",),
                 checkpoint_dir: Path | None = None):
        """``companions``: producers whose beams add candidates to ``predict(..., rerank=True)``
        (:meth:`candidate_lists`). ``rerank_styles``: the styles that check renders candidates
        in (:class:`rerank.RenderReranker`)."""
        self.decoder, self.vocab, self.config = decoder, vocab, config
        self.companions = list(companions)
        self.rerank_styles = tuple(rerank_styles)
        self.checkpoint_dir = checkpoint_dir
        self._reranker = None

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
            from .plots import prediction_figure

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
