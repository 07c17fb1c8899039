"""Keras vs ONNX Runtime, side by side in one run: cold start and peak memory of an
``img2latex predict one.png`` process, greedy latency of one image, throughput in batches of 16,
the model files' sizes, and how often the two runtimes (and float16 weights) agree.
Run it on an otherwise idle machine: other jobs on the cores change every figure.

    python benchmarks/runtimes.py [--checkpoint checkpoints/img2latex-base] [--quick]

The ONNX exports (float32 and float16 weights) are written to ``runs/onnx/<name>`` and
``runs/onnx/<name>-float16`` first where they are missing or older than the checkpoint. Peak
memory is the ``predict`` process's maximum resident set (``ru_maxrss``), measured from a
small launcher process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, median_ms, sample_data, table  # noqa: E402

from img2latex_lib.checkpoints import WEIGHTS_FILE  # noqa: E402
from img2latex_lib.decoding import LatexProducer  # noqa: E402
from img2latex_lib.export import export_onnx  # noqa: E402
from img2latex_lib.runtime import ENCODER_FILE, MANIFEST_FILE, STEP_FILE, OnnxProducer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _export(checkpoint: Path, out: Path, float16: bool) -> Path:
    """``out``, exported again unless it is newer than the checkpoint's weights."""
    manifest = out / MANIFEST_FILE
    if not manifest.exists() or manifest.stat().st_mtime < (
            checkpoint / WEIGHTS_FILE).stat().st_mtime:
        export_onnx(checkpoint, out, float16=float16)
    return out


#: Runs a command and prints its exit code, whether it printed, the seconds to its first line
#: of output and its peak resident memory (KB). A small process of its own, because Linux
#: counts into a child's ``ru_maxrss`` the memory of the process it was forked from (here,
#: this benchmark with TensorFlow loaded).
_LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
first = process.stdout.readline()
seconds = time.perf_counter() - start
process.communicate()
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(process.returncode, int(bool(first.strip())), seconds, peak)
"""


def _cold_start(image: str, model: Path, runtime: str) -> tuple[float, float]:
    """Seconds from starting ``img2latex predict image`` to its first line of output, and the
    process's peak resident memory in MB (``getrusage(RUSAGE_CHILDREN).ru_maxrss``)."""
    command = [sys.executable, "-m", "img2latex_lib.cli", "predict", image,
               "--checkpoint", str(model), "--runtime", runtime]
    result = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], capture_output=True,
                            text=True, check=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    code, printed, seconds, peak = result.stdout.split()
    if code != "0" or printed != "1":
        raise RuntimeError(f"{' '.join(command)} failed (exit code {code})")
    return float(seconds), int(peak) / 1024


def _per_second(producer, images: list[str]) -> float:
    producer.predict(images[:16], batch_size=16)  # tracing
    start = time.perf_counter()
    producer.predict(images, batch_size=16)
    return len(images) / (time.perf_counter() - start)


def _agreement(a: list[str], b: list[str]) -> str:
    same = sum(x == y for x, y in zip(a, b, strict=True))
    return f"{same}/{len(a)} ({same / len(a):.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "img2latex-base")
    parser.add_argument("--n", type=int, default=30, help="images per latency measurement")
    parser.add_argument("--batch", type=int, default=64, help="images in the throughput run")
    parser.add_argument("--starts", type=int, default=3, help="cold starts per runtime")
    parser.add_argument("--quick", action="store_true", help="few images, one cold start")
    args = parser.parse_args()
    n, batch, starts = (5, 16, 1) if args.quick else (args.n, args.batch, args.starts)
    images, _, source = sample_data(max(n, batch))
    name = args.checkpoint.name
    exports = {float16: _export(args.checkpoint, ROOT / "runs" / "onnx" / (
        name + ("-float16" if float16 else "")), float16) for float16 in (False, True)}
    models = {"Keras (TensorFlow)": (args.checkpoint, "keras"),
              "ONNX Runtime": (exports[False], "onnx"),
              "ONNX Runtime, float16 weights": (exports[True], "onnx")}
    producers = {"Keras (TensorFlow)": LatexProducer(args.checkpoint),
                 "ONNX Runtime": OnnxProducer(exports[False]),
                 "ONNX Runtime, float16 weights": OnnxProducer(exports[True])}
    columns: dict[str, list[str]] = {}
    outputs: dict[str, dict[int, list[str]]] = {}
    for label, (model, runtime) in models.items():
        runs = [_cold_start(images[0], model, runtime) for _ in range(starts)]
        producer = producers[label]
        outputs[label] = {beam: producer.predict(images[:batch], beam_size=beam)
                          for beam in (1, 3)}
        files = ([model / WEIGHTS_FILE] if runtime == "keras"
                 else [model / ENCODER_FILE, model / STEP_FILE])
        columns[label] = [
            f"{statistics.median(s for s, _ in runs):.2f}",
            f"{max(m for _, m in runs):.0f}",
            f"{median_ms(producer.predict, images[:n]):.0f}",
            f"{_per_second(producer, images[:batch]):.1f}",
            f"{sum(f.stat().st_size for f in files) / 1e6:.1f}",
        ]
    reference = outputs["Keras (TensorFlow)"]
    measurements = ["`predict one.png` cold start, to first output (s)",
                    "`predict one.png` peak memory (MB)", "greedy, one image, median (ms)",
                    "greedy, batches of 16 (images/s)", "model files (MB)",
                    "greedy = Keras's", "beam 3 = Keras's"]
    for label in models:
        columns[label] += [_agreement(outputs[label][beam], reference[beam]) for beam in (1, 3)]
    targets = ["≤ 1.5 (ONNX)", "≤ 300 (ONNX)", "ONNX ≤ Keras", "", "", "≥ 90%", "≥ 90%"]
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f} at the end\n"
          f"model: {name}; data: {source}; {len(images[:batch])} images for throughput and "
          f"agreement, {n} for latency, {starts} cold start(s) each\n")
    print(table(["measurement", *models, "goal"],
                [[m, *(columns[label][i] for label in models), targets[i]]
                 for i, m in enumerate(measurements)]))


if __name__ == "__main__":
    main()
