"""Read and write data sets in the im2latex-100k layout, and build them from formulas + a renderer.

The one on-disk layout (as in the public processed im2latex-100k)::

    <dir>/formulas.norm.lst   one space-tokenized formula per line (line N = formula N)
    <dir>/matching.txt        a split file: "<image name> <formula line>" per sample
    <dir>/images/<name>.png

The original release names are accepted too (``im2latex_formulas.norm.lst``,
``formula_images_processed/``, split files such as ``im2latex_train_filter.lst``), and so is the
Kaggle CSV variant (``formula,image`` columns).
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tarfile
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .tokenizer import MAX_LEN, normalize, tokenize

FORMULA_FILES = ("formulas.norm.lst", "im2latex_formulas.norm.lst")
IMAGE_DIRS = ("images", "formula_images_processed")
DEFAULT_SPLIT = "matching.txt"
FAILED_FILE = "failed.tsv"


@dataclass(frozen=True)
class Sample:
    """One labeled image: its file and its formula (space-tokenized)."""

    image: Path
    formula: str
    formula_id: int = -1


@dataclass
class Dataset:
    """Samples kept after filtering, and how many were dropped for which reason."""

    samples: list[Sample]
    dropped: Counter = field(default_factory=Counter)
    source: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def images(self) -> list[Path]:
        return [s.image for s in self.samples]

    @property
    def formulas(self) -> list[str]:
        return [s.formula for s in self.samples]

    def report(self) -> str:
        """One line: samples kept and dropped, with reasons."""
        kept = f"{self.source}: {len(self.samples)} samples"
        if not self.dropped:
            return kept + ", none dropped"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common())
        return f"{kept}, dropped {sum(self.dropped.values())} ({reasons})"


def _first_existing(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"{root}: no {what} found (looked for {', '.join(names)})")


def formula_problem(formula: str, max_len: int = MAX_LEN) -> str | None:
    """Why a formula cannot be a training target, or None if it can."""
    if not formula.strip():
        return "empty formula"
    if "[object Object]" in formula:
        return "corrupt formula"
    if len(tokenize(formula)) > max_len:
        return f"longer than {max_len} tokens"
    return None


def _filtered(pairs: Iterable[tuple[Path, str, int]], max_len: int, source: str) -> Dataset:
    dataset = Dataset([], Counter(), source)
    for image, formula, formula_id in pairs:
        problem = formula_problem(formula, max_len)
        if problem is None and not image.exists():
            problem = "image missing"
        if problem:
            dataset.dropped[problem] += 1
        else:
            dataset.samples.append(Sample(image, formula, formula_id))
    return dataset


def load(
    root: str | Path,
    split: str = DEFAULT_SPLIT,
    max_len: int = MAX_LEN,
    ids: range | None = None,
) -> Dataset:
    """Read a data set in the im2latex-100k layout; ``ids`` keeps only those formula lines."""
    root = Path(root)
    formulas = _first_existing(root, FORMULA_FILES, "formula file").read_text(
        encoding="utf-8", errors="replace").split("\n")
    images = _first_existing(root, IMAGE_DIRS, "image folder")
    split_path = root / split
    if not split_path.exists():
        raise FileNotFoundError(f"{split_path}: split file not found")

    def pairs() -> Iterable[tuple[Path, str, int]]:
        for number, line in enumerate(split_path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) >= len(formulas):
                raise ValueError(f"{split_path}:{number}: expected '<image> <formula line>'")
            formula_id = int(parts[1])
            if ids is None or formula_id in ids:
                name = parts[0] if parts[0].endswith(".png") else parts[0] + ".png"
                yield images / name, formulas[formula_id].strip(), formula_id

    return _filtered(pairs(), max_len, str(split_path.parent.name + "/" + split))


def load_csv(csv_path: str | Path, images_dir: str | Path | None = None,
             max_len: int = MAX_LEN) -> Dataset:
    """Read the Kaggle CSV variant: a ``formula,image`` header and one sample per row."""
    csv_path = Path(csv_path)
    images = Path(images_dir) if images_dir else csv_path.parent / IMAGE_DIRS[1]
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"formula", "image"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: expected columns 'formula' and 'image'")
        rows = [(images / row["image"], " ".join(tokenize(row["formula"])), i)
                for i, row in enumerate(reader)]
    return _filtered(rows, max_len, csv_path.name)


# --- building a data set from formulas ---------------------------------------------------------


def _write_formulas(out_dir: Path, formulas: Sequence[str]) -> None:
    path = out_dir / FORMULA_FILES[0]
    text = "\n".join(formulas) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise ValueError(f"{path}: holds different formulas; use a new folder or delete it")
    atomic_write(path, text)


def atomic_write(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` through a temporary file, so a reader never
    sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


def _read_failures(out_dir: Path) -> dict[int, str]:
    path = out_dir / FAILED_FILE
    if not path.exists():
        return {}
    rows = (line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines())
    return {int(row[0]): row[1] for row in rows if len(row) == 2}


def build_dataset(
    formulas: Sequence[str],
    renderer,
    out_dir: str | Path,
    chunk_size: int = 64,
    workers: int = 2,
    progress: bool = True,
) -> Dataset:
    """Render ``formulas`` with ``renderer`` into the im2latex layout under ``out_dir``.

    Formulas are normalized first. Rendering runs in ``workers`` parallel chunks; a rerun
    skips images already written and formulas that failed before (listed in ``failed.tsv``).
    Failures are reported, never fatal.
    """
    out_dir = Path(out_dir)
    (out_dir / IMAGE_DIRS[0]).mkdir(parents=True, exist_ok=True)
    normalized = [normalize(f) for f in formulas]
    _write_formulas(out_dir, normalized)
    failures = _read_failures(out_dir)
    todo = [i for i in range(len(normalized))
            if i not in failures and not (out_dir / IMAGE_DIRS[0] / f"{i}.png").exists()]
    chunks = [todo[k:k + chunk_size] for k in range(0, len(todo), chunk_size)]

    def render_chunk(ids: list[int]) -> dict[int, str]:
        errors = {}
        for i, result in zip(ids, renderer.render_batch([normalized[i] for i in ids]), strict=True):
            if result.image is None:
                errors[i] = (result.error or "render failed").replace("\n", " ")
            else:
                tmp = out_dir / IMAGE_DIRS[0] / f"{i}.tmp.png"
                result.image.save(tmp)
                tmp.replace(out_dir / IMAGE_DIRS[0] / f"{i}.png")
        return errors

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, tqdm(
        total=len(todo), desc="rendering", unit="formula", disable=not progress
    ) as bar:
        for ids, errors in zip(chunks, pool.map(render_chunk, chunks), strict=True):
            failures.update(errors)
            atomic_write(out_dir / FAILED_FILE,
                         "".join(f"{i}\t{e}\n" for i, e in sorted(failures.items())))
            bar.update(len(ids))

    written = [i for i in range(len(normalized))
               if (out_dir / IMAGE_DIRS[0] / f"{i}.png").exists()]
    atomic_write(out_dir / DEFAULT_SPLIT, "".join(f"{i}.png {i}\n" for i in written))
    dataset = load(out_dir)
    if failures:
        dataset.dropped["failed to render"] += len(failures)
    return dataset


# --- downloading im2latex-100k ---------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a public archive: where it is, and (when known) its SHA-256."""

    url: str
    name: str
    sha256: str | None = None
    unpack: bool = False


IM2LATEX_URL = "http://lstm.seas.harvard.edu/latex/data/"
IM2LATEX_FILES = (
    RemoteFile(IM2LATEX_URL + "im2latex_formulas.norm.lst", "im2latex_formulas.norm.lst"),
    RemoteFile(IM2LATEX_URL + "im2latex_train_filter.lst", "im2latex_train_filter.lst"),
    RemoteFile(IM2LATEX_URL + "im2latex_validate_filter.lst", "im2latex_validate_filter.lst"),
    RemoteFile(IM2LATEX_URL + "im2latex_test_filter.lst", "im2latex_test_filter.lst"),
    RemoteFile(IM2LATEX_URL + "formula_images_processed.tar.gz",
               "formula_images_processed.tar.gz", unpack=True),
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(remote: RemoteFile, target: Path, progress: bool) -> None:
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(remote.url, timeout=60) as response:  # noqa: S310
        expected = response.headers.get("Content-Length")
        with partial.open("wb") as out, tqdm(
            total=int(expected) if expected else None, unit="B", unit_scale=True,
            desc=remote.name, disable=not progress,
        ) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))
    size = partial.stat().st_size
    if expected is not None and size != int(expected):
        partial.unlink()
        raise OSError(f"{remote.url}: got {size} bytes, the server announced {expected}")
    partial.replace(target)


def download_im2latex100k(
    dest: str | Path, files: Sequence[RemoteFile] = IM2LATEX_FILES, progress: bool = True
) -> Path:
    """Fetch the public processed im2latex-100k into ``dest``, verify and unpack it.

    Sizes are checked against the server's Content-Length and, where the manifest gives one,
    the SHA-256; a file already present and verified is not fetched again. Archives are
    unpacked with tarfile's safe ``data`` filter.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for remote in files:
        target = dest / remote.name
        if not target.exists():
            _fetch(remote, target, progress)
        if remote.sha256 and _sha256(target) != remote.sha256:
            bad = target.with_name(target.name + ".corrupt")
            shutil.move(target, bad)
            raise OSError(f"{target}: SHA-256 mismatch (moved to {bad.name}); download again")
        if remote.unpack:
            marker = dest / f".{remote.name}.unpacked"
            if not marker.exists():
                with tarfile.open(target) as archive:
                    archive.extractall(dest, filter="data")
                marker.touch()
    return dest
