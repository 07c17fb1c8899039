"""Tests for img2latex_lib.labels (the committed label set) and benchmarks/label_all.py (the
resumable labelling job), with real files, the real renderer and the tiny shipped model."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from img2latex_lib.labels import (
    LABEL_FIELDS,
    RUNS_FILE,
    STATUSES,
    Run,
    accepted_labels,
    decided_images,
    export_work,
    is_label_set,
    label_rows,
    load_label_spec,
    load_labels,
    merge_labels,
    read_labels,
    read_runs,
    register_run,
    shard_file,
    work_folder,
)
from img2latex_lib.render import LatexRenderer, latex_available
from img2latex_lib.selftrain import DECISIONS_FILE, read_decisions

ROOT = Path(__file__).resolve().parents[1]
FAST = ROOT / "checkpoints" / "img2latex-fast"
RUN = Run("img2latex-base", "0123456789ab", 5, 0.6, 0.1, "2025-01-01")


def _row(image: str, status: str, run: int, formula: str = "", distance: str = "0.300",
         margin: str = "inf") -> dict[str, str]:
    return {"image": image, "status": status, "distance": distance, "margin": margin,
            "round": "5", "run": str(run), "formula": formula}


def test_label_files_round_trip_merge_and_skip(tmp_path):
    labels = tmp_path / "labels"
    assert register_run(labels, RUN) == 1
    assert register_run(labels, Run("img2latex-base", RUN.weights, 5, 0.6, 0.1, "2025-02-02")) == 1
    stricter = Run("img2latex-base", RUN.weights, 5, 0.5, 0.1, "2025-02-02")
    assert register_run(labels, stricter) == 2, "other verifier settings: another run"
    assert read_runs(labels) == {1: RUN, 2: stricter} and is_label_set(labels)

    path = shard_file(labels, "images-00")
    first = [_row("10.png", "accepted", 1, r"\frac { a } { b }"), _row("2.png", "rejected", 1)]
    assert merge_labels(path, first) == 2
    assert merge_labels(path, first) == 0, "idempotent"
    changed = _row("10.png", "rejected", 1)
    assert merge_labels(path, [changed, _row("2.png", "failed", 2, distance="inf"),
                               _row("3.png", "ambiguous", 1)]) == 2
    rows = read_labels(path)
    assert rows[("10.png", 1)] == first[0], "a row already there is never changed"
    assert set(rows) == {("2.png", 1), ("2.png", 2), ("3.png", 1), ("10.png", 1)}
    lines = path.read_text().splitlines()
    assert lines[0] == "\t".join(LABEL_FIELDS)
    assert [line.split("\t")[0] for line in lines[1:]] == ["2.png", "2.png", "3.png", "10.png"]
    assert lines[-1] == "10.png\taccepted\t0.300\tinf\t5\t1\t\\frac { a } { b }"
    assert decided_images(labels, "images-00", 1) == {"2.png", "3.png", "10.png"}
    assert decided_images(labels, "images-00", 2) == {"2.png"}
    assert decided_images(labels, "images-01", 1) == set()
    assert not path.with_name(path.name + ".tmp").exists(), "written through a renamed file"

    with pytest.raises(ValueError, match="tab or line break"):
        merge_labels(path, [_row("4.png", "accepted", 1, "a\tb")])
    with pytest.raises(ValueError, match="unknown status"):
        merge_labels(path, [_row("4.png", "maybe", 1)])
    assert read_labels(path) == rows, "a refused merge leaves the file as it was"


def test_label_rows_from_decisions_keep_formulas_of_accepted_rows_only():
    decisions = {
        "0.png": {"image": "0.png", "status": "accepted", "distance": "0.100", "margin": "inf",
                  "round": "5", "formula": "x ^ { 2 }", "reason": ""},
        "1.png": {"image": "1.png", "status": "rejected", "distance": "0.400", "margin": "0.020",
                  "round": "5", "formula": "x ^ { 3 }", "reason": "ambiguous"},
        "2.png": {"image": "2.png", "status": "rejected", "distance": "2.000", "margin": "1.000",
                  "round": "5", "formula": "y", "reason": "no match"},
        "3.png": {"image": "3.png", "status": "failed", "distance": "inf", "margin": "0.000",
                  "round": "5", "formula": "", "reason": "3.png: blank image"},
    }
    rows = {row["image"]: row for row in label_rows(decisions, 7)}
    assert [rows[f"{k}.png"]["status"] for k in range(4)] == [
        "accepted", "ambiguous", "rejected", "failed"]
    assert [rows[f"{k}.png"]["formula"] for k in range(4)] == ["x ^ { 2 }", "", "", ""]
    assert {row["run"] for row in rows.values()} == {"7"}
    assert set(STATUSES) == {row["status"] for row in rows.values()}


def test_export_folds_work_folders_and_ignores_a_line_cut_short(tmp_path):
    work, labels = tmp_path / "work", tmp_path / "labels"
    folder = work_folder(work, RUN, "images-03")
    folder.mkdir()
    header = "image\tstatus\tdistance\tmargin\tround\tformula\treason\n"
    (folder / DECISIONS_FILE).write_text(
        header + "30000.png\taccepted\t0.100\tinf\t5\tx\t\n30001.png\taccepted\t0.1")
    assert set(read_decisions(folder)) == {"30000.png"}, "a killed run's last line is no row"
    assert export_work(work, labels) == {"images-03": 1}
    assert export_work(work, labels) == {}, "idempotent"
    assert read_runs(labels) == {1: RUN}
    assert read_labels(shard_file(labels, "images-03"))[("30000.png", 1)]["formula"] == "x"


def _label_set(root: Path) -> Path:
    labels = root / "labels"
    register_run(labels, RUN)
    register_run(labels, Run("img2latex-h48", "ba9876543210", 5, 0.6, 0.1, "2025-02-02"))
    merge_labels(shard_file(labels, "images-00"), [
        _row("0.png", "accepted", 1, "a", distance="0.500"),
        _row("0.png", "accepted", 2, "a ^ { 2 }", distance="0.200"),
        _row("1.png", "rejected", 1),
        _row("5.png", "accepted", 1, "b", distance="0.550", margin="0.300"),
    ])
    merge_labels(shard_file(labels, "images-01"), [_row("10000.png", "accepted", 2, "c")])
    return labels


def test_load_labels_as_a_dataset(tmp_path):
    labels = _label_set(tmp_path / "data")
    assert accepted_labels(labels) == {"0.png": "a ^ { 2 }", "5.png": "b", "10000.png": "c"}
    assert accepted_labels(labels, margin=0.5) == {"0.png": "a ^ { 2 }", "10000.png": "c"}
    assert accepted_labels(labels, threshold=0.2) == {"0.png": "a ^ { 2 }"}

    images = tmp_path / "data" / "cache" / "train_unlabeled" / "images"
    images.mkdir(parents=True)
    for name in ("0.png", "1.png", "5.png"):
        Image.new("L", (40, 20), 255).save(images / name)
    with pytest.raises(FileNotFoundError, match=f"{images}: 1 of the 3 images .* 10000.png"):
        load_labels(labels)
    Image.new("L", (40, 20), 255).save(images / "10000.png")

    dataset = load_labels(labels)  # the images folder beside the labels, by default
    assert [(s.image, s.formula, s.formula_id) for s in dataset.samples] == [
        (images / "0.png", "a ^ { 2 }", 0), (images / "5.png", "b", 5),
        (images / "10000.png", "c", 10000)]
    assert dataset.report() == f"labels:{labels}: 3 samples, none dropped"
    assert load_labels(labels, images).formulas == dataset.formulas, "the images folder itself"
    assert load_labels(labels, max_len=1).dropped == {"longer than 1 tokens": 1}
    assert len(load_labels(labels, threshold=0.5)) == 2

    moved = tmp_path / "elsewhere"
    shutil.move(images.parent, moved)
    assert load_label_spec(f"{labels}@{moved}").images == [
        moved / "images" / name for name in ("0.png", "5.png", "10000.png")]
    with pytest.raises(FileNotFoundError, match="not a label set"):
        load_labels(tmp_path)


def _job():
    spec = importlib.util.spec_from_file_location("label_all", ROOT / "benchmarks" / "label_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not latex_available(), reason="pdflatex or gs not installed")
def test_labelling_job_quick_mode_end_to_end(tmp_path, capsys):
    """Unpack a shard, label its first images with the tiny model, export, resume after a kill,
    fold a work folder, and go on from the committed files alone on a 'fresh machine'."""
    source, repo = tmp_path / "source", tmp_path / "repo"
    (source / "images").mkdir(parents=True)
    formulas = [r"a ^ { 2 } + b ^ { 2 }", r"\sqrt { x + 1 }", r"x _ { i }", r"\frac { 1 } { 2 }",
                r"e ^ { i \pi }"]
    renders = LatexRenderer(template="im2latex", workers=1).render_batch(formulas)
    for k, result in enumerate(renders):
        result.image.save(source / "images" / f"{k}.png")
    subprocess.run(["tar", "-czf", str(source / "images-00.tgz"), "-C", str(source), "images"],
                   check=True)
    job = _job()
    argv = ["--repo", str(repo), "--source", str(source), "--checkpoint", str(FAST), "--quick",
            "--chunk", "2", "--batch_size", "1"]
    labels = repo / "runs" / "label_all_quick" / "labels"
    path = shard_file(labels, "images-00")

    assert job.main(argv) == 0
    assert "images-00: 4 images, 0 decided before, 4 to label" in capsys.readouterr().out
    runs = read_runs(labels)
    assert list(runs) == [1] and runs[1].checkpoint == "img2latex-fast" and runs[1].beam == 5
    rows = read_labels(path)
    assert sorted(rows) == [(f"{k}.png", 1) for k in range(4)]
    assert all(row["status"] in STATUSES for row in rows.values())
    assert all(bool(row["formula"]) == (row["status"] == "accepted") for row in rows.values())
    assert not (repo / "data" / "labels").exists(), "a dry run leaves the committed set alone"
    written = path.read_text()

    assert job.main(argv) == 0
    assert "4 decided before, 0 to label" in capsys.readouterr().out
    assert path.read_text() == written, "a rerun skips every decided image"

    # killed while writing a decision: the work folder's last line is cut short, and the
    # label set had not received it yet
    decisions = next((repo / "runs" / "label_all_quick" / "work").glob("*/images-00"))
    text = (decisions / DECISIONS_FILE).read_text()
    (decisions / DECISIONS_FILE).write_text(text[: text.rindex("3.png") + 4])
    shutil.rmtree(labels)
    assert job.main(argv[:-4] + ["--export-only"]) == 0
    assert sorted(read_labels(path)) == [(f"{k}.png", 1) for k in range(3)]
    assert job.main(argv) == 0
    assert "3 decided before, 1 to label" in capsys.readouterr().out
    assert sorted(read_labels(path)) == [(f"{k}.png", 1) for k in range(4)]
    with (decisions / DECISIONS_FILE).open() as handle:
        assert [row["image"] for row in csv.DictReader(handle, delimiter="\t")] == [
            f"{k}.png" for k in range(4)], "the cut line was dropped before appending"

    accepted = [row for row in read_labels(path).values() if row["status"] == "accepted"]
    dataset = load_labels(labels, repo / "data" / "cache" / "train_unlabeled")
    assert len(dataset) == len(accepted)

    # a fresh machine: only the committed label set and the source shards
    shutil.rmtree(repo / "runs" / "label_all_quick" / "work")
    shutil.rmtree(repo / "data" / "cache")
    assert job.main(argv) == 0
    assert "4 decided before, 0 to label" in capsys.readouterr().out
    assert not (repo / "data" / "cache" / "train_unlabeled").exists(), "nothing to unpack"
    assert (labels / RUNS_FILE).exists()


def test_pack_and_train_read_a_label_set_with_its_images_folder(tmp_path, capsys):
    from img2latex_lib.cli import main
    from img2latex_lib.packing import read_pack

    labels = _label_set(tmp_path / "data")
    images = tmp_path / "unpacked" / "images"
    images.mkdir(parents=True)
    for name in ("0.png", "5.png", "10000.png"):
        picture = Image.new("L", (60, 24), 255)
        picture.paste(0, (5, 5, 40, 18))
        picture.save(images / name)
    out = tmp_path / "labels.pack"
    assert main(["pack", str(out), "--data", f"{labels}@{images.parent}"]) == 0
    assert f"labels:{labels}: 3 samples" in capsys.readouterr().out
    assert sorted(read_pack(out)[1]) == ["a ^ { 2 }", "b", "c"]
    assert main(["pack", str(out), "--data", f"{labels}:0-5"]) == 1
    assert "a label set takes no formula ids" in capsys.readouterr().err
