"""The model's and its training's hyperparameters: the :class:`Config` dataclass, saved as
``config.json`` beside the weights. No Keras, TensorFlow or numpy here, so the command line
builds its flags (and ``--help``) from it without loading them."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

#: Default model input height in pixels: at 48 a median formula gives the decoder about one
#: feature column per token (at 32, two thirds of one), worth 0.04 BLEU-4 in a measured A/B.
INPUT_HEIGHT = 48

# What a number field (or each number of a list field) may be: a description with ``{}`` for
# the noun, and a test. A number field without one of these in its metadata must be positive.
_POSITIVE = ("positive {}", lambda v: v > 0)
_NON_NEGATIVE = {"rule": ("non-negative {}", lambda v: v >= 0)}
_FRACTION = {"rule": ("{} in [0, 1)", lambda v: 0 <= v < 1)}
_SHARE = {"rule": ("{} in [0, 1]", lambda v: 0 <= v <= 1)}


@dataclass
class Config:
    """Every hyperparameter of a model and its training; saved as ``config.json``."""

    vocab_size: int = field(default=0, metadata=_NON_NEGATIVE)  # 0: not yet set from the vocab
    # image input
    image_height: int = INPUT_HEIGHT
    max_width: int = 800
    width_step: int = 32
    # encoder
    cnn_widths: tuple[int, ...] = (16, 32, 64, 64, 128)
    cnn_pools: tuple[int, ...] = (2, 2, 2, 1, 1)
    enc_out_dim: int = 256
    max_rows: int = 64
    # decoder
    embedding_dim: int = 80
    decoder_units: int = 256
    attention_heads: int = 4
    attention_head_size: int = 32
    max_len: int = 150
    dropout: float = field(default=0.1, metadata=_FRACTION)
    # training
    num_epochs: int = 10
    # stop after this many optimizer steps (0: after num_epochs); the learning-rate schedule
    # then decays over them
    max_steps: int = field(default=0, metadata=_NON_NEGATIVE)
    # stop after this much training time (0: no limit); the learning rate then decays over the
    # time, not the steps
    max_minutes: float = field(default=0.0, metadata=_NON_NEGATIVE)
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = field(default=500, metadata=_NON_NEGATIVE)
    min_lr_ratio: float = field(default=0.05, metadata=_SHARE)
    clipnorm: float = 5.0
    label_smoothing: float = field(default=0.0, metadata=_FRACTION)
    checkpoint_every: int = field(default=500, metadata=_NON_NEGATIVE)  # 0: at epoch ends only
    save_dir: str = "runs/img2latex"
    seed: int = field(default=0, metadata=_NON_NEGATIVE)
    extra: dict = field(default_factory=dict)

    @property
    def stride(self) -> int:
        """Total down-sampling of the CNN in each direction."""
        total = 1
        for pool in self.cnn_pools:
            total *= pool
        return total

    def validate(self) -> None:
        """Raise ValueError, in one line naming the field, on a value or combination that
        cannot work: each field's type and range (from its annotation and metadata), then what
        the model's layers need of them together."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            expected = _expected(spec, _FIELD_TYPES[spec.name], value)
            if expected:
                raise ValueError(f"{spec.name} must be {expected}, not {_shown(value)}")
        if len(self.cnn_widths) != len(self.cnn_pools):
            raise ValueError(f"cnn_widths and cnn_pools must have the same length (one pooling "
                             f"per CNN block), not {len(self.cnn_widths)} and "
                             f"{len(self.cnn_pools)}")
        for name in ("image_height", "width_step"):
            if getattr(self, name) % self.stride:
                raise ValueError(f"{name} must be a multiple of the CNN stride {self.stride} "
                                 f"(the product of cnn_pools), not {getattr(self, name)}")
        if self.image_height // self.stride > self.max_rows:
            raise ValueError(f"max_rows must be at least the {self.image_height // self.stride} "
                             f"feature rows (image_height / CNN stride), not {self.max_rows}")
        if self.enc_out_dim % 2:
            raise ValueError(f"enc_out_dim must be even (two GRU directions), "
                             f"not {self.enc_out_dim}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Any) -> Config:
        """Build and validate from a dict, rejecting unknown keys; lists become tuples where the
        field is a tuple."""
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object of config fields, not a "
                             f"{_JSON_TYPES.get(type(values), type(values).__name__)}")
        unknown = sorted(set(values) - set(_FIELD_TYPES))
        if unknown:
            hints = [difflib.get_close_matches(key, _FIELD_TYPES, n=1) for key in unknown]
            raise ValueError("unknown config keys: " + ", ".join(
                f"{key} (did you mean {hint[0]}?)" if hint else key
                for key, hint in zip(unknown, hints, strict=True)))
        config = cls(**{key: tuple(value) if isinstance(value, list) and
                        _FIELD_TYPES[key] == tuple[int, ...] else value
                        for key, value in values.items()})
        config.validate()
        return config

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read and validate ``config.json``; a problem is one ValueError line naming the file
        (and the field)."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: config file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        try:
            return cls.from_dict(values)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


_FIELD_TYPES: dict[str, Any] = get_type_hints(Config)
_JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def _number_ok(value: Any, kind: type, test: Callable[[Any], bool]) -> bool:
    """Whether ``value`` is a finite ``kind`` (an int counts as a float, a bool as neither)
    that passes ``test``."""
    allowed = (int,) if kind is int else (int, float)
    return (isinstance(value, allowed) and not isinstance(value, bool)
            and math.isfinite(value) and test(value))


def _expected(spec: Field, kind: Any, value: Any) -> str | None:
    """What the field's value must be (e.g. "a positive integer"), or None if it is that."""
    text, test = spec.metadata.get("rule", _POSITIVE)
    if kind in (int, float):
        noun = "integer" if kind is int else "number"
        return None if _number_ok(value, kind, test) else "a " + text.format(noun)
    if kind == tuple[int, ...]:
        fine = isinstance(value, tuple) and value and all(
            _number_ok(item, int, test) for item in value)
        return None if fine else "a non-empty list of " + text.format("integers")
    if kind is str:
        return None if isinstance(value, str) and value else "a non-empty string"
    if kind is dict:
        return None if isinstance(value, dict) else "a JSON object"
    raise TypeError(f"Config.{spec.name}: no validation rule for a field of type {kind}")


def _shown(value: Any) -> str:
    """A value as in the message: lists (tuples here) as lists."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


# The fields that shape the weights: a warm start takes them from the checkpoint it starts from.
ARCHITECTURE = ("image_height", "cnn_widths", "cnn_pools", "enc_out_dim", "max_rows",
                "embedding_dim", "decoder_units", "attention_heads", "attention_head_size",
                "max_len")
