"""Checkpoint folders: save (atomically), load and check, export (or average two), and find
the shipped one.

A checkpoint is a folder with ``config.json``, ``vocab.json`` and ``model.weights.h5`` (and, for a
training run, ``optimizer.npz`` and ``state.json``). Writes go to a staging folder that is renamed
into place, so a killed run never leaves half a checkpoint; loading checks that config, vocabulary
and weights agree and says in one line which file is wrong. Used by training and decoding alike.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .config import Config
from .model import Img2LaTeX, build_model
from .tokenizer import Vocab

CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "model.weights.h5"
OPTIMIZER_FILE, STATE_FILE = "optimizer.npz", "state.json"
DEFAULT_CHECKPOINT_NAME = "img2latex-base"
CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint folder is missing files, corrupt, or inconsistent."""


def save_checkpoint(
    directory: str | Path,
    model: Img2LaTeX,
    vocab: Vocab,
    optimizer: keras.optimizers.Optimizer | None = None,
    state: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically: a killed run leaves the previous one intact (and
    a temporary folder, removed by the next save or resume)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(directory)
    staging = directory.with_name(f"{_staging_prefix(directory)}{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    model.config.save(staging / CONFIG_FILE)
    vocab.save(staging / VOCAB_FILE)
    model.save_weights(staging / WEIGHTS_FILE)
    if optimizer is not None and optimizer.built:
        np.savez(staging / OPTIMIZER_FILE,
                 *[keras.ops.convert_to_numpy(v) for v in optimizer.variables])
    if state is not None:
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
    old = directory.with_name(f".{directory.name}.old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def _staging_prefix(directory: Path) -> str:
    """The name, less its process id, of the folder a save of ``directory`` writes first."""
    return f".{directory.name}.tmp-"


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (elsewhere than POSIX: assumed so, as
    ``os.kill`` would end it)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user's
        pass
    return True


def remove_stale_staging(directory: str | Path) -> list[Path]:
    """Remove the temporary folders beside ``directory`` that saves of it, killed midway, left:
    those whose process has ended. A live process's save in progress is left alone (two
    writers of one checkpoint are a mistake, but it should fail loudly, not by a folder
    vanishing under one of them). Returns the folders removed."""
    directory = Path(directory)
    prefix = _staging_prefix(directory)
    if not directory.parent.is_dir():
        return []
    stale = [path for path in directory.parent.iterdir() if path.name.startswith(prefix)
             and path.name[len(prefix):].isdigit()
             and not _process_alive(int(path.name[len(prefix):]))]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def existing_checkpoint(directory: Path) -> Path:
    """The folder itself, or its previous version if a save was killed between two renames."""
    if directory.exists():
        return directory
    old = directory.with_name(f".{directory.name}.old")
    return old if old.exists() else directory


def load_from_checkpoint(
    directory: str | Path, verbose: bool = False
) -> tuple[Img2LaTeX, Vocab, Config]:
    """Load model, vocabulary and config; explain exactly what is missing or inconsistent, as
    a one-line CheckpointError naming the file (and the field)."""
    directory = checkpoint_folder(Path(directory), (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE))
    config = read_part(Config.load, directory / CONFIG_FILE)
    vocab = read_part(Vocab.load, directory / VOCAB_FILE)
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f"{directory}: vocab.json has {len(vocab)} tokens but config.json "
                              f"says vocab_size={config.vocab_size}")
    try:
        model = build_model(config, verbose=verbose)
    except ValueError as error:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {error}") from None
    load_weights(model, directory / WEIGHTS_FILE, "config.json")
    return model, vocab, config


def checkpoint_folder(directory: Path, needed: Sequence[str]) -> Path:
    """The checkpoint folder to read (see ``existing_checkpoint``), which has ``needed``."""
    directory = existing_checkpoint(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder not found")
    missing = [name for name in needed if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: checkpoint is missing {', '.join(missing)}")
    return directory


def read_part(load: Callable[[Path], Any], path: Path) -> Any:
    """``load(path)``, with any problem as a CheckpointError naming ``path``."""
    try:
        return load(path)
    except (ValueError, OSError) as error:
        message = str(error)
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from None


def training_position(path: Path) -> dict:
    """A training checkpoint's ``state.json``: where the run was (epoch, step in it, steps)."""
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(state, dict):
        raise ValueError("expected a JSON object with the run's position")
    for key in ("epoch", "step_in_epoch", "global_step"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    return state


def load_weights(model: keras.Model, path: Path, against: str) -> None:
    """Load a weights file; a problem is one CheckpointError line naming it."""
    try:
        with warnings.catch_warnings():  # the optimizer's state comes from optimizer.npz
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            model.load_weights(path)
    except (ValueError, OSError, KeyError) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = " ".join(lines[:2]) if lines else type(error).__name__
        raise CheckpointError(f"{path}: weights are corrupt or do not match {against} "
                              f"({reason})") from None


def _refuse_to_overwrite(target: str | Path, *sources: str | Path) -> None:
    """An export must not replace a checkpoint it reads."""
    resolved = Path(target).resolve()
    if any(resolved == existing_checkpoint(Path(source)).resolve() for source in sources):
        raise CheckpointError(f"{target}: export to another folder than the checkpoint's")


def export_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Copy a checkpoint for shipping: config, vocabulary and the model's weights only (a
    training checkpoint's weights file also holds the optimizer's moments, twice the model)."""
    model, vocab, _ = load_from_checkpoint(source)
    _refuse_to_overwrite(target, source)
    return save_checkpoint(target, model, vocab)


def average_checkpoints(
    first: str | Path, second: str | Path, target: str | Path, weight: float = 0.5
) -> Path:
    """Export a checkpoint whose weights are ``(1 - weight) * first + weight * second``.

    For two fine-tunes of one model (a warm start and the run that continued it), the average
    often keeps most of what the second learned and loses less of what the first knew (weight
    averaging, "model soups", Wortsman et al. 2022). Vocabularies and weight shapes must agree.
    """
    if not 0.0 <= weight <= 1.0:
        raise CheckpointError(f"--weight {weight:g}: give a weight from 0 to 1")
    _refuse_to_overwrite(target, first, second)
    model, vocab, _ = load_from_checkpoint(first)
    other, other_vocab, _ = load_from_checkpoint(second)
    if vocab.id_to_token != other_vocab.id_to_token:
        raise CheckpointError(f"{second}: its vocabulary differs from {first}'s")
    mine, theirs = model.get_weights(), other.get_weights()
    if [w.shape for w in mine] != [w.shape for w in theirs]:
        raise CheckpointError(f"{second}: its architecture differs from {first}'s")
    model.set_weights([(1 - weight) * a + weight * b for a, b in zip(mine, theirs, strict=True)])
    return save_checkpoint(target, model, vocab)


def default_checkpoint() -> Path:
    """The shipped checkpoint (or ``$IMG2LATEX_CHECKPOINT``)."""
    path = Path(os.environ.get("IMG2LATEX_CHECKPOINT", CHECKPOINTS_DIR / DEFAULT_CHECKPOINT_NAME))
    if not (path / WEIGHTS_FILE).exists():
        raise CheckpointError(f"{path}: no trained checkpoint there; train one "
                              f"(img2latex train) or pass --checkpoint DIR")
    return path
