"""Importing Keras (and TensorFlow) without their start-up log lines: used by the command line
and by the notebooks' first cell, so neither a terminal nor a stored notebook output shows them."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

#: Lines TensorFlow's C++ code writes to stderr at import, before its log level applies.
TENSORFLOW_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\..*")


@contextlib.contextmanager
def lines_dropped_from_stderr(noise: re.Pattern) -> Iterator[None]:
    """Inside, what is written to file descriptor 2 (by Python or by C++) is held back; at the
    end, every line but those ``noise`` matches in full goes on to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", "replace").splitlines():
                if not noise.fullmatch(line):
                    print(line, file=sys.stderr)


def import_keras_quietly() -> None:
    """Import Keras (and TensorFlow) without their start-up log lines on stderr: TensorFlow's
    log level 3 (errors only) and its import-time lines dropped. Left alone where Keras is
    already imported or the user set TensorFlow's log variables."""
    if "keras" in sys.modules or {"TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"} & set(
            os.environ):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with lines_dropped_from_stderr(TENSORFLOW_NOISE):
        import keras  # noqa: F401  (imported here, quietly, for what follows)
