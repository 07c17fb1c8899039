"""Keras imported without TensorFlow's start-up lines, other stderr lines kept."""

import os
import subprocess
import sys

from img2latex_lib.quiet import TENSORFLOW_NOISE

NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
         "I0000 00:00:1796639020.104433    4973 port.cc:153] oneDNN custom operations are on. "
         "You may see slightly different numerical results.")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_noise_pattern_matches_tensorflow_lines_only():
    assert all(TENSORFLOW_NOISE.fullmatch(line) for line in NOISE)
    assert not TENSORFLOW_NOISE.fullmatch("img2latex: a.png: not an image")
    assert not TENSORFLOW_NOISE.fullmatch("E0000 00:00:1.0 1 port.cc:1] something failed")


def test_keras_imports_without_a_line_on_stderr():
    result = _python("import sys; from img2latex_lib.quiet import import_keras_quietly; "
                     "import_keras_quietly(); print('keras' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert result.stderr == ""


def test_other_lines_written_to_descriptor_2_come_through():
    lines = "\\n".join([NOISE[0], "a line of our own", NOISE[1], "another"])
    result = _python("import os; from img2latex_lib.quiet import TENSORFLOW_NOISE, "
                     "lines_dropped_from_stderr\n"
                     "with lines_dropped_from_stderr(TENSORFLOW_NOISE):\n"
                     f"    os.write(2, b'{lines}\\n')")
    assert result.returncode == 0
    assert result.stderr.splitlines() == ["a line of our own", "another"]
