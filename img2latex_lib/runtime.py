"""A light runtime: an ONNX export (``img2latex export --format onnx``) decoded with ONNX Runtime,
numpy and PIL only: no TensorFlow, no Keras.

An export is a folder: ``encoder.onnx`` (preprocessed images [B, H, W, 1] -> the attention's
memory), ``decoder_step.onnx`` (tokens [B], state and memory -> log-probabilities [B, V], new
state, mean attention [B, N]), ``vocab.json`` and ``model.json`` (the graphs' inputs and
outputs, and the model's config: input height, max width, width step, max length). The searches
(``search``), the preprocessing and the balance constraint are the Keras runtime's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .constraints import BalanceConstraint
from .producer import Producer
from .search import StepDecoderBase
from .tokenizer import Vocab

MANIFEST_FILE, VOCAB_FILE = "model.json", "vocab.json"
ENCODER_FILE, STEP_FILE = "encoder.onnx", "decoder_step.onnx"
#: What the decoder step returns, in this order.
STEP_OUTPUTS = ("log_probs", "new_state", "attention")
#: ``model.json``'s ``format`` and the version of it this runtime reads.
FORMAT, FORMAT_VERSION = "img2latex-onnx", 1


class ExportError(ValueError):
    """An ONNX export folder is missing, incomplete, corrupt or of another version."""


def read_manifest(folder: Path) -> dict:
    """An export's ``model.json``, checked: one ExportError line saying what is wrong."""
    if not folder.is_dir():
        raise ExportError(f"{folder}: no such folder (make an ONNX export with img2latex "
                          f"export --format onnx CHECKPOINT {folder})")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        hint = ("is a Keras checkpoint: export it with img2latex export --format onnx "
                f"{folder} OUT, or leave out --runtime onnx" if (folder / "config.json").is_file()
                else f"has no {MANIFEST_FILE}: it is not an ONNX export (img2latex export "
                "--format onnx CHECKPOINT OUT makes one)")
        raise ExportError(f"{folder}: {hint}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{path}: unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: not an img2latex ONNX export's {MANIFEST_FILE}")
    if manifest.get("version") != FORMAT_VERSION:
        raise ExportError(f"{path}: export format version {manifest.get('version')!r}; this "
                          f"img2latex reads version {FORMAT_VERSION} (export the checkpoint again)")
    return manifest


def _session(path: Path, threads: int | None):
    """An ONNX Runtime session of one graph file; a missing or corrupt file is an ExportError."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("the ONNX runtime needs onnxruntime: pip install onnxruntime") from None

    if not path.is_file():
        raise ExportError(f"{path}: missing from the export (export the checkpoint again)")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own classes (InvalidProtobuf, Fail, ...)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({reason})") from None


class OnnxStepDecoder(StepDecoderBase):
    """The exported encoder and decoder step, run by ONNX Runtime (state and memory are numpy)."""

    def __init__(self, folder: str | Path, constraint: BalanceConstraint | None = None,
                 threads: int | None = None):
        """``threads``: ONNX Runtime's threads per graph (default: one per core)."""
        super().__init__(constraint)
        folder = Path(folder)
        manifest = read_manifest(folder)
        self.encoder = _session(folder / manifest["encoder"]["file"], threads)
        self.decoder = _session(folder / manifest["decoder_step"]["file"], threads)
        self.memory_names = list(manifest["memory"])
        self.state_size = int(manifest["state_size"])

    def encode(self, images: np.ndarray, repeat: int = 1) -> list[np.ndarray]:
        memory = self.encoder.run(self.memory_names,
                                  {"images": np.asarray(images, dtype=np.float32)})
        return [np.repeat(part, repeat, axis=0) for part in memory] if repeat > 1 else memory

    def _raw_step(self, tokens: np.ndarray, state: np.ndarray, memory: list[np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feeds: dict[str, Any] = {"tokens": np.asarray(tokens, dtype=np.int32), "state": state,
                                 **dict(zip(self.memory_names, memory, strict=True))}
        log_probs, state, attention = self.decoder.run(STEP_OUTPUTS, feeds)
        return log_probs, state, attention

    def initial_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.state_size), dtype=np.float32)

    def select(self, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[rows]


class OnnxProducer(Producer):
    """Image(s) -> LaTeX with an ONNX export, as :class:`decoding.LatexProducer` does with a
    Keras checkpoint (same preprocessing, searches, balance constraint and render check)."""

    def __init__(self, folder: str | Path, balanced: bool = True,
                 companions: Sequence[str | Path] = (),
                 rerank_styles: Sequence[str] = ("im2latex",), threads: int | None = None):
        """``folder``: what ``img2latex export --format onnx`` wrote; ``companions``: other
        exports whose beams add render-check candidates; the rest as for ``LatexProducer``."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        try:
            config = Config.from_dict(manifest["config"])
            vocab = Vocab.load(folder / VOCAB_FILE)
        except (KeyError, TypeError, ValueError, OSError) as error:
            raise ExportError(f"{folder}: export is incomplete or corrupt ({error}); export "
                              "the checkpoint again") from None
        if len(vocab) != config.vocab_size:
            raise ExportError(f"{folder}: {VOCAB_FILE} has {len(vocab)} tokens but "
                              f"{MANIFEST_FILE} says vocab_size={config.vocab_size}")
        decoder = OnnxStepDecoder(folder, BalanceConstraint(vocab) if balanced else None,
                                  threads)
        super().__init__(decoder, vocab, config,
                         [OnnxProducer(path, balanced, threads=threads) for path in companions],
                         rerank_styles, folder)
