"""The committed label set: every pseudo-labelling decision on the unlabeled im2latex-100k
training images, as compact text under ``data/labels/`` (the layout is in its README.md).

::

    data/labels/runs.tsv        run  checkpoint  weights  beam  threshold  margin  date
    data/labels/images-00.tsv   image  status  distance  margin  round  run  formula

One label file per source shard (``images-00.tgz`` holds ``images/0.png`` ... ``9999.png``), one
row per image and run, sorted by image number then run. ``status`` is ``accepted``, ``rejected``
(no candidate close enough), ``ambiguous`` (a differently-rendering rival matched almost as well)
or ``failed`` (unreadable image, or no candidate rendered); only accepted rows carry a formula,
normalized and space-tokenized as :mod:`~img2latex_lib.selftrain` writes it. A run is one model
and verifier setting (weights hash, beam size, threshold, margin): the labeller skips the images
already decided by its run. Every write is atomic, and merging never drops a row already there.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .datasets import IMAGE_DIRS, Dataset, _filtered, atomic_write
from .selftrain import read_decisions
from .tokenizer import MAX_LEN

RUNS_FILE = "runs.tsv"
RUN_FIELDS = ("run", "checkpoint", "weights", "beam", "threshold", "margin", "date")
LABEL_FIELDS = ("image", "status", "distance", "margin", "round", "run", "formula")
STATUSES = ("accepted", "rejected", "ambiguous", "failed")
RUN_RECORD = "run.json"
# where the images of data/labels are unpacked, relative to the label folder's parent (data/)
DEFAULT_IMAGES = Path("cache") / "train_unlabeled"

Row = dict[str, str]


@dataclass(frozen=True)
class Run:
    """The model and verifier settings that produced a set of decisions."""

    checkpoint: str  # the checkpoint folder's name
    weights: str  # the first 12 hex digits of the SHA-256 of its model.weights.h5
    beam: int
    threshold: float
    margin: float
    date: str  # the day the run started (ISO)

    @property
    def key(self) -> tuple[str, int, float, float]:
        """What makes two runs the same: weights, beam size and verifier settings."""
        return self.weights, self.beam, self.threshold, self.margin


def weights_hash(checkpoint: str | Path) -> str:
    """The short hash that names a checkpoint's weights in ``runs.tsv``."""
    digest = hashlib.sha256()
    with (Path(checkpoint) / "model.weights.h5").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _read_table(path: Path, fields: tuple[str, ...]) -> list[Row]:
    """Rows of a tab-separated file with a header of ``fields``; a file that is absent has none."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != fields:
        raise ValueError(f"{path}: expected the header {' '.join(fields)}")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        values = line.split("\t")
        if len(values) != len(fields):
            raise ValueError(f"{path}:{number}: expected {len(fields)} tab-separated fields")
        rows.append(dict(zip(fields, values, strict=True)))
    return rows


def _write_table(path: Path, fields: tuple[str, ...], rows: Iterable[Row]) -> None:
    """Write ``rows`` under a header (atomically); no field may hold a tab or a line break."""
    lines = ["\t".join(fields)]
    for row in rows:
        values = [row[name] for name in fields]
        if any("\t" in v or "\n" in v or "\r" in v for v in values):
            raise ValueError(f"{path}: a tab or line break inside a field of {values[0]}")
        lines.append("\t".join(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines) + "\n")


def read_runs(labels_dir: str | Path) -> dict[int, Run]:
    """The runs of a label set, by run id."""
    return {int(row["run"]): Run(row["checkpoint"], row["weights"], int(row["beam"]),
                                 float(row["threshold"]), float(row["margin"]), row["date"])
            for row in _read_table(Path(labels_dir) / RUNS_FILE, RUN_FIELDS)}


def register_run(labels_dir: str | Path, run: Run) -> int:
    """The id of ``run`` in ``runs.tsv``: that of a run with the same key, else a new one."""
    runs = read_runs(labels_dir)
    for run_id, known in runs.items():
        if known.key == run.key:
            return run_id
    run_id = max(runs, default=0) + 1
    runs[run_id] = run
    _write_table(Path(labels_dir) / RUNS_FILE, RUN_FIELDS,
                 ({"run": str(k), **{name: str(v) for name, v in asdict(r).items()}}
                  for k, r in sorted(runs.items())))
    return run_id


def shard_file(labels_dir: str | Path, shard: str) -> Path:
    """The label file of a source shard (``images-00`` for ``images-00.tgz``)."""
    return Path(labels_dir) / f"{shard}.tsv"


def _order(key: tuple[str, int]) -> tuple[int, str, int]:
    stem = key[0].removesuffix(".png")
    return (int(stem) if stem.isdigit() else -1, key[0], key[1])


def read_labels(path: str | Path) -> dict[tuple[str, int], Row]:
    """The rows of one label file, by (image name, run id)."""
    rows = _read_table(Path(path), LABEL_FIELDS)
    return {(row["image"], int(row["run"])): row for row in rows}


def merge_labels(path: str | Path, rows: Iterable[Row]) -> int:
    """Add ``rows`` to a label file (atomically). A row already there for the same image and
    run is kept as it is; returns how many rows were new."""
    path = Path(path)
    labels = read_labels(path)
    new = 0
    for row in rows:
        if row["status"] not in STATUSES:
            raise ValueError(f"{row['image']}: unknown status {row['status']!r}")
        key = (row["image"], int(row["run"]))
        if key not in labels:
            labels[key] = {name: row[name] for name in LABEL_FIELDS}
            new += 1
    if new:
        _write_table(path, LABEL_FIELDS, (labels[k] for k in sorted(labels, key=_order)))
    return new


def label_rows(decisions: dict[str, Row], run_id: int) -> list[Row]:
    """Label-file rows of a pseudo-label folder's decisions (``selftrain.read_decisions``):
    a rejection for ambiguity gets its own status, and only accepted rows keep the formula."""
    rows = []
    for decision in decisions.values():
        status = decision["status"]
        if status == "rejected" and decision["reason"] == "ambiguous":
            status = "ambiguous"
        rows.append({"image": decision["image"], "status": status,
                     "distance": decision["distance"], "margin": decision["margin"],
                     "round": decision["round"], "run": str(run_id),
                     "formula": decision["formula"] if status == "accepted" else ""})
    return rows


def decided_images(labels_dir: str | Path, shard: str, run_id: int) -> set[str]:
    """Names of the images of ``shard`` that run ``run_id`` has decided already."""
    return {image for image, run in read_labels(shard_file(labels_dir, shard)) if run == run_id}


# --- the labeller's work folders ---------------------------------------------------------------


def work_folder(work_dir: str | Path, run: Run, shard: str) -> Path:
    """The pseudo-label folder (``selftrain.pseudo_label``'s output) of one run and shard:
    ``WORK/<weights>-b<beam>-t<threshold>-m<margin>/<shard>``, with the run in ``run.json``."""
    run_dir = Path(work_dir) / f"{run.weights}-b{run.beam}-t{run.threshold}-m{run.margin}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / RUN_RECORD).exists():
        atomic_write(run_dir / RUN_RECORD, json.dumps(asdict(run), indent=1) + "\n")
    return run_dir / shard


def export_work(work_dir: str | Path, labels_dir: str | Path) -> Counter:
    """Fold every decision of the work folders under ``work_dir`` into the label set (each run
    registered in ``runs.tsv``, each shard's rows merged into its file). Idempotent; returns the
    number of new rows per shard."""
    new: Counter = Counter()
    for record in sorted(Path(work_dir).glob(f"*/{RUN_RECORD}")):
        run = Run(**json.loads(record.read_text(encoding="utf-8")))
        run_id = None
        for folder in sorted(p for p in record.parent.iterdir() if p.is_dir()):
            decisions = read_decisions(folder)
            if decisions:
                run_id = run_id or register_run(labels_dir, run)
                added = merge_labels(shard_file(labels_dir, folder.name),
                                     label_rows(decisions, run_id))
                if added:
                    new[folder.name] += added
    return new


# --- reading the label set as a data set -------------------------------------------------------


def accepted_rows(labels_dir: str | Path, threshold: float | None = None,
                  margin: float | None = None) -> dict[str, Row]:
    """The accepted row of each image (distance, margin, formula, ...), by image name: the newest
    run's where several runs accepted it. ``threshold`` / ``margin`` re-judge stricter without
    decoding again (as ``selftrain.refilter``): only rows whose recorded distance is at most
    ``threshold`` and margin at least ``margin`` count."""
    rows: dict[str, tuple[int, Row]] = {}
    for path in sorted(Path(labels_dir).glob("*.tsv")):
        if path.name == RUNS_FILE:
            continue
        for (image, run), row in read_labels(path).items():
            if row["status"] != "accepted":
                continue
            if threshold is not None and float(row["distance"]) > threshold:
                continue
            if margin is not None and float(row["margin"]) < margin:
                continue
            if image not in rows or run > rows[image][0]:
                rows[image] = (run, row)
    return {image: row for image, (_, row) in rows.items()}


def accepted_labels(labels_dir: str | Path, threshold: float | None = None,
                    margin: float | None = None) -> dict[str, str]:
    """The accepted formula of each image, by image name (see :func:`accepted_rows`)."""
    return {image: row["formula"]
            for image, row in accepted_rows(labels_dir, threshold, margin).items()}


def is_label_set(path: str | Path) -> bool:
    """Whether ``path`` is a label set folder (it holds ``runs.tsv``)."""
    return (Path(path) / RUNS_FILE).is_file()


def load_labels(labels_dir: str | Path, images_dir: str | Path | None = None,
                max_len: int = MAX_LEN, threshold: float | None = None,
                margin: float | None = None) -> Dataset:
    """The accepted labels of a label set with their images, as a :class:`Dataset`.

    ``images_dir``: where the source shards were unpacked (holding ``images/N.png``, or the
    ``images`` folder itself); by default ``cache/train_unlabeled`` beside the label folder
    (``data/cache/train_unlabeled`` for ``data/labels``). Raises FileNotFoundError naming the
    folder when any accepted image is missing there. ``threshold`` and ``margin`` as in
    :func:`accepted_labels`; formulas longer than ``max_len`` tokens are dropped and counted.
    """
    labels_dir = Path(labels_dir)
    if not is_label_set(labels_dir):
        raise FileNotFoundError(f"{labels_dir}: not a label set (no {RUNS_FILE})")
    root = Path(images_dir) if images_dir else labels_dir.parent / DEFAULT_IMAGES
    folder = root / IMAGE_DIRS[0] if (root / IMAGE_DIRS[0]).is_dir() else root
    labels = accepted_labels(labels_dir, threshold, margin)
    missing = sorted((name for name in labels if not (folder / name).exists()),
                     key=lambda name: _order((name, 0)))
    if missing:
        raise FileNotFoundError(
            f"{folder}: {len(missing)} of the {len(labels)} images labelled in {labels_dir} are "
            f"missing (first {missing[0]}); unpack the shards there: tar -xzf images-NN.tgz -C "
            f"{folder.parent if folder.name == IMAGE_DIRS[0] else folder}")
    pairs = ((folder / name, formula, int(name.removesuffix(".png"))
              if name.removesuffix(".png").isdigit() else -1)
             for name, formula in sorted(labels.items(), key=lambda item: _order((item[0], 0))))
    return _filtered(pairs, max_len, f"labels:{labels_dir}")


def load_label_spec(spec: str) -> Dataset:
    """:func:`load_labels` of a command-line spec ``LABELS[@IMAGES]`` (``data/labels`` or
    ``data/labels@data/cache/train_unlabeled``)."""
    labels_dir, _, images_dir = spec.partition("@")
    return load_labels(labels_dir, images_dir or None)
