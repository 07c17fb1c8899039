"""The development test set (im2latex-100k val ids 7475-8474) and the prediction files of the
accuracy benchmarks: ``id<TAB>reference<TAB>prediction`` with a header line."""

from __future__ import annotations

import sys
from pathlib import Path

from _common import VAL_DIR

from img2latex_lib.datasets import Sample, load

FIRST_ID = 7475
SIZE = 1000
#: Val ids set aside to choose settings on (the shipped model never trained on them).
CALIBRATION = range(6975, 7475)
ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = Path("test-output") / "accuracy"
HEADER = ("id", "reference", "prediction")


def _val_samples(ids: range, what: str) -> list[Sample]:
    """The val samples with ``ids``, reported as ``what``; exit (status 0) if the data is absent.

    Samples the loader drops (empty, or over 150 tokens) are reported and left out.
    """
    if not (VAL_DIR / "matching.txt").exists():
        print(f"skipped: the im2latex-100k val data is not at {VAL_DIR.relative_to(ROOT)} "
              "(a symlink to it is needed for this benchmark)")
        sys.exit(0)
    dataset = load(VAL_DIR, ids=ids)
    print(f"data: {what}, val ids {ids.start}-{ids.stop - 1}; {dataset.report()}")
    return dataset.samples


def dev_test(n: int = SIZE) -> list[Sample]:
    """The first ``n`` samples of the development test set; exit (status 0) if it is absent."""
    if not 0 < n <= SIZE:
        sys.exit(f"--n must be between 1 and {SIZE} (the development test set's size), got {n}")
    return _val_samples(range(FIRST_ID, FIRST_ID + n), "development test set")


def calibration_slice(n: int = len(CALIBRATION)) -> list[Sample]:
    """The first ``n`` samples of the calibration slice; exit (status 0) if the data is absent."""
    return _val_samples(CALIBRATION, "calibration slice")[:n]


def checkpoint_or_exit(path: Path | None) -> Path:
    """``path``, or the shipped checkpoint; exit with the reason if there is none."""
    from img2latex_lib.checkpoints import CheckpointError, default_checkpoint  # imports keras

    try:
        return path or default_checkpoint()
    except CheckpointError as error:
        sys.exit(str(error))


def _cell(text: str) -> str:
    return " ".join(text.split())


def write_tsv(path: Path, samples: list[Sample], predictions: list[str]) -> None:
    """Write one ``id, reference, prediction`` row per sample (whitespace runs become spaces)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["\t".join(HEADER)] + [
        f"{s.formula_id}\t{_cell(s.formula)}\t{_cell(p)}"
        for s, p in zip(samples, predictions, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def read_predictions(path: Path) -> dict[int, str]:
    """Predictions by id from a file written by :func:`write_tsv`."""
    if not path.exists():
        sys.exit(f"{path}: prediction file not found")
    predictions = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cells = line.split("\t")
        if number == 1 and tuple(cells) == HEADER:
            continue
        if len(cells) != len(HEADER) or not cells[0].isdigit():
            sys.exit(f"{path}:{number}: expected 'id<TAB>reference<TAB>prediction'")
        predictions[int(cells[0])] = cells[2]
    return predictions
