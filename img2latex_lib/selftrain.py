"""Self-training: the model labels unlabeled real images, and a label is kept only when the
formula, rendered the way the real images were made, reproduces the image.

The comparison (:func:`compare.image_distance`) has to forgive what rasterisation does and nothing
else. A real im2latex-100k image and the project's render of its gold formula agree in size
within a pixel, but their glyphs sit up to half a pixel apart, each by its own amount, so their
grey levels differ everywhere a little. The distance therefore upsamples both crops by two,
lets every pixel of ink find matching ink within half an original pixel, and reports the worst
5x5-pixel window of ink left unexplained on either side: a wrong or missing symbol leaves a
window of unexplained ink, a sub-pixel shift does not. The render is tried at the four
half-pixel phases of its downsampling. :class:`Verifier` also asks for a clear margin: the best
candidate must match clearly better than any candidate that renders differently.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .compare import bitmaps_match, image_distance, render_phases
from .datasets import DEFAULT_SPLIT, FORMULA_FILES, IMAGE_DIRS, atomic_write
from .render import LatexRenderer, Renderer, RenderResult
from .tokenizer import _atom_end, normalize

# Calibrated with the third release's beam-5 candidates (benchmarks/verifier.py): the setting that
# accepts the most calibration images (val ids 6975-7474, never trained on) at precision >= 0.98
# was 0.6 / 0.1: 0.984 (63 of 64), recall 0.128; on the dev-test (ids 7475-8474) it gave 0.987
# (149 of 151), recall 0.151. The earlier 1.3 / 0.3 let one-glyph misses through in scripts and
# accents (c/e, 2/3, \delta/\theta, \tilde/\hat): 0.946 and 0.960 with that model.
DEFAULT_THRESHOLD = 0.6
DEFAULT_MARGIN = 0.1
DECISIONS_FILE = "decisions.tsv"
DECISION_FIELDS = ("image", "status", "distance", "margin", "round", "formula", "reason")


@dataclass
class Verdict:
    """What the verifier decided for one image."""

    status: str  # "accepted", "rejected" or "failed"
    formula: str | None  # the accepted formula (normalized), or the best candidate otherwise
    distance: float  # the best candidate's image_distance
    margin: float  # how much worse the best differently-rendering candidate matched
    distances: list[float] = field(default_factory=list)  # one per candidate
    reason: str = ""


class Verifier:
    """Accept a candidate formula for a real image only when its render reproduces the image.

    threshold: the largest accepted :func:`image_distance`.
    margin: the best candidate must match at least this much better than every candidate
        that renders to a different picture (equivalent spellings render alike, within a pixel
        at 200 dpi, and do not count).
    renderer: a :class:`LatexRenderer` in the im2latex style with ``downsample=1``; the verifier
        shrinks its renders itself, at every phase.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN,
                 renderer: Renderer | None = None, factor: int = 2) -> None:
        self.threshold = threshold
        self.margin = margin
        self.factor = factor
        self.renderer = renderer or LatexRenderer(template="im2latex", downsample=1)

    def verify_batch(self, images: Sequence[np.ndarray | Image.Image],
                     candidate_lists: Sequence[Sequence[str]]) -> list[Verdict]:
        """One verdict per image; each image's candidates are ordered best-scored first."""
        flat = [c for candidates in candidate_lists for c in candidates]
        results = iter(self.renderer.render_batch(flat))
        return [self.judge(np.asarray(image.convert("L") if isinstance(image, Image.Image)
                                      else image),
                           [next(results) for _ in candidates])
                for image, candidates in zip(images, candidate_lists, strict=True)]

    def verify(self, image: np.ndarray | Image.Image, candidates: Sequence[str]) -> Verdict:
        """The verdict for one image and its candidates (best-scored first)."""
        return self.verify_batch([image], [candidates])[0]

    def judge(self, image: np.ndarray, results: Sequence[RenderResult]) -> Verdict:
        """The verdict for a grey ``image`` given its candidates' renders (best-scored first),
        made by :attr:`renderer`."""
        fine = [None if r.image is None else np.asarray(r.image) for r in results]
        if all(f is None for f in fine):
            reason = results[0].error if results else "no candidates"
            return Verdict("failed", None, float("inf"), 0.0,
                           [float("inf")] * len(results), reason or "")
        distances = [float("inf") if f is None else
                     min(image_distance(image, phase) for phase in render_phases(f, self.factor))
                     for f in fine]
        order = sorted(range(len(results)), key=lambda k: (distances[k], k))
        best = order[0]
        rivals = [distances[k] for k in order[1:]
                  if fine[k] is not None and not _same_picture(fine[k], fine[best])]
        if not np.isfinite(distances[best]):
            margin = 0.0  # nothing matched, so nothing stands out
        else:
            margin = (min(rivals) - distances[best]) if rivals else float("inf")
        formula = normalize(results[best].formula)
        if distances[best] > self.threshold:
            return Verdict("rejected", formula, distances[best], margin, distances, "no match")
        if margin < self.margin:
            return Verdict("rejected", formula, distances[best], margin, distances, "ambiguous")
        return Verdict("accepted", formula, distances[best], margin, distances)


def _same_picture(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Two fine renders show one picture: their ink agrees within a pixel at 200 dpi, which
    forgives the sub-pixel shift of, say, a trailing ``\\qquad`` but not a changed letter."""
    return a is not None and b is not None and bitmaps_match(a, b, tolerance=1)


_SIGN_FLIPS = {"+": "-", "-": "+", "=": "-", "<": ">", ">": "<"}


def near_misses(formula: str, seed: int = 0) -> dict[str, str]:
    """Formulas one small mistake away from a token-spaced ``formula``, the kind a model makes:
    "symbol" (a letter or digit changed), "script" (a sub- or superscript dropped), "sign"
    (an operator changed) and "space" (a thin space ``\\,`` added). Kinds with nothing to change
    are left out. For testing and calibrating a verifier: it must reject every one."""
    import random

    rng = random.Random(seed)
    tokens = formula.split()
    out: dict[str, str] = {}
    symbols = [k for k, t in enumerate(tokens) if len(t) == 1 and t.isalnum()]
    if symbols:
        k = rng.choice(symbols)
        pool = "abcdefghijklmnopqrstuvwxyz" if tokens[k].isalpha() else "0123456789"
        changed = list(tokens)
        changed[k] = rng.choice([c for c in pool if c != tokens[k].lower()])
        out["symbol"] = " ".join(changed)
    scripts = [k for k, t in enumerate(tokens[:-1]) if t in ("_", "^")]
    if scripts:
        k = rng.choice(scripts)
        out["script"] = " ".join(tokens[:k] + tokens[_atom_end(tokens, k + 1):])
    signs = [k for k, t in enumerate(tokens) if t in _SIGN_FLIPS]
    if signs:
        k = rng.choice(signs)
        out["sign"] = " ".join(tokens[:k] + [_SIGN_FLIPS[tokens[k]]] + tokens[k + 1:])
    if len(tokens) > 1:
        k = rng.randrange(1, len(tokens))
        out["space"] = " ".join(tokens[:k] + ["\\,"] + tokens[k:])
    return out


# --- pseudo-labelling a folder of images -------------------------------------------------------


@dataclass
class LabelSummary:
    """Counts of one pseudo-labelling run (this run's images only) and its speed."""

    counts: Counter = field(default_factory=Counter)
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # why each failed image failed

    @property
    def images_per_second(self) -> float:
        done = sum(self.counts.values())
        return done / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        c = self.counts
        return (f"{c['accepted']} accepted, {c['rejected']} rejected, {c['failed']} failed "
                f"({self.skipped} decided before), {self.images_per_second:.2f} images/s")


def read_decisions(out_dir: str | Path) -> dict[str, dict[str, str]]:
    """The decisions already written in ``out_dir``, by image name (a last line that a killed
    run left unfinished is none)."""
    path = Path(out_dir) / DECISIONS_FILE
    if not path.exists():
        return {}
    data = path.read_bytes()
    complete = io.StringIO(data[: data.rfind(b"\n") + 1].decode("utf-8"), newline="")
    return {row["image"]: row for row in csv.DictReader(complete, delimiter="\t")}


def _cut_unfinished_line(path: Path) -> None:
    """Drop a last line that a killed run left unfinished, so that appended rows start a line."""
    with path.open("rb+") as handle:
        handle.truncate(handle.read().rfind(b"\n") + 1)


def _decisions_writer(handle) -> csv.DictWriter:
    """A writer of ``decisions.tsv`` rows (tab-separated, one line per image)."""
    return csv.DictWriter(handle, DECISION_FIELDS, delimiter="\t", lineterminator="\n")


def accepted_names(folders: Sequence[str | Path]) -> set[str]:
    """Names of the images accepted in these pseudo-label folders (earlier rounds)."""
    return {name for folder in folders for name, row in read_decisions(folder).items()
            if row["status"] == "accepted"}


def _numeric_order(path: Path) -> tuple[bool, int, str]:
    return (not path.stem.isdigit(), int(path.stem) if path.stem.isdigit() else 0, path.name)


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder stands for its PNG files in numeric order (2.png before 10.png)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.glob("*.png"), key=_numeric_order)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def _write_dataset(out_dir: Path, decisions: dict[str, dict[str, str]]) -> None:
    """Rewrite the formula and split files from the accepted decisions (atomically)."""
    accepted = [row for row in decisions.values() if row["status"] == "accepted"]
    atomic_write(out_dir / FORMULA_FILES[0], "".join(row["formula"] + "\n" for row in accepted))
    atomic_write(out_dir / DEFAULT_SPLIT,
                 "".join(f"{row['image']} {line}\n" for line, row in enumerate(accepted)))


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def pseudo_label(
    producer,
    images: Sequence[str | Path],
    out_dir: str | Path,
    verifier: Verifier | None = None,
    round_index: int = 1,
    beam_size: int = 5,
    batch_size: int = 32,
    progress: bool = True,
) -> LabelSummary:
    """Label ``images`` with ``producer``'s n-best lists and keep what ``verifier`` accepts.

    Writes ``out_dir`` in the project's dataset layout (accepted images linked or copied into
    ``images/``, their normalized formulas, the split file) plus ``decisions.tsv`` with every
    decision. Resumable: images already decided in ``out_dir`` are skipped, and a run that is
    stopped loses at most the batch in progress.
    """
    from tqdm.auto import tqdm

    from .preprocess import ImageError, crop_to_ink, load_image

    out_dir = Path(out_dir)
    (out_dir / IMAGE_DIRS[0]).mkdir(parents=True, exist_ok=True)
    verifier = verifier or Verifier()
    decisions = read_decisions(out_dir)
    todo = [Path(p) for p in images if Path(p).name not in decisions]
    summary = LabelSummary(skipped=len(images) - len(todo))
    path = out_dir / DECISIONS_FILE
    if path.exists():
        _cut_unfinished_line(path)
    new_file = not path.exists() or path.stat().st_size == 0
    start = time.perf_counter()
    with path.open("a", newline="", encoding="utf-8") as handle, tqdm(
            total=len(todo), desc=f"round {round_index}", unit="image",
            disable=not progress) as bar:
        writer = _decisions_writer(handle)
        if new_file:
            writer.writeheader()
        for begin in range(0, len(todo), batch_size):
            chunk = todo[begin : begin + batch_size]
            loaded, rows = [], []
            for source in chunk:
                try:
                    image = load_image(source)
                    crop_to_ink(image, name=str(source))  # a blank image cannot be decoded
                    loaded.append((source, image))
                except ImageError as error:
                    summary.failures.append(str(error))
                    rows.append(_row(source, Verdict("failed", None, float("inf"), 0.0,
                                                     reason=str(error)), round_index))
            if loaded:
                nbest = producer.nbest_lists([img for _, img in loaded], beam_size)
                verdicts = verifier.verify_batch(
                    [img for _, img in loaded], [[latex for latex, _ in n] for n in nbest])
                for (source, _), verdict in zip(loaded, verdicts, strict=True):
                    if verdict.status == "accepted":
                        _link_or_copy(source, out_dir / IMAGE_DIRS[0] / source.name)
                    rows.append(_row(source, verdict, round_index))
            for row in rows:
                writer.writerow(row)
                decisions[row["image"]] = row
                summary.counts[row["status"]] += 1
            handle.flush()
            _write_dataset(out_dir, decisions)
            bar.update(len(chunk))
            bar.set_postfix(accepted=summary.counts["accepted"])
    _write_dataset(out_dir, decisions)
    summary.seconds = time.perf_counter() - start
    return summary


def refilter(source_dir: str | Path, out_dir: str | Path, threshold: float = DEFAULT_THRESHOLD,
             margin: float = DEFAULT_MARGIN) -> int:
    """Re-judge an earlier pseudo-labelling run with stricter settings, without decoding or
    rendering again: ``out_dir`` becomes a data set of the labels accepted in ``source_dir``
    whose recorded distance is within ``threshold`` and margin at least ``margin`` (with their
    decisions). Returns how many were kept."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not (source_dir / DECISIONS_FILE).exists():
        raise FileNotFoundError(f"{source_dir}: no {DECISIONS_FILE} (not a pseudo-label folder)")
    kept = {name: row for name, row in read_decisions(source_dir).items()
            if row["status"] == "accepted" and float(row["distance"]) <= threshold
            and float(row["margin"]) >= margin}
    (out_dir / IMAGE_DIRS[0]).mkdir(parents=True, exist_ok=True)
    for name in kept:
        _link_or_copy(source_dir / IMAGE_DIRS[0] / name, out_dir / IMAGE_DIRS[0] / name)
    table = io.StringIO()
    writer = _decisions_writer(table)
    writer.writeheader()
    writer.writerows(kept.values())
    atomic_write(out_dir / DECISIONS_FILE, table.getvalue())
    _write_dataset(out_dir, kept)
    return len(kept)


def _row(source: Path, verdict: Verdict, round_index: int) -> dict[str, str]:
    return {"image": source.name, "status": verdict.status,
            "distance": f"{verdict.distance:.3f}", "margin": f"{verdict.margin:.3f}",
            "round": str(round_index), "formula": verdict.formula or "",
            "reason": verdict.reason.replace("\t", " ").replace("\n", " ")}
