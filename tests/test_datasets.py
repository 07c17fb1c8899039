import csv
import hashlib
import http.server
import io
import tarfile
import threading
from functools import partial

import pytest
from PIL import Image

from img2latex_lib import datasets
from img2latex_lib.datasets import RemoteFile, build_dataset, download_im2latex100k, load, load_csv
from img2latex_lib.render import default_renderer


def _write_layout(root, formulas, split_lines):
    (root / "images").mkdir(parents=True)
    (root / "formulas.norm.lst").write_text("\n".join(formulas) + "\n")
    (root / "matching.txt").write_text("\n".join(split_lines) + "\n")
    for line in split_lines:
        Image.new("L", (40, 20), 255).save(root / "images" / line.split()[0])


def test_load_filters_and_reports_why(tmp_path):
    long_formula = " ".join(["x"] * 151)
    _write_layout(tmp_path, ["a + b", long_formula, "", r"\sqrt [ [object Object] ] { 2 }", "c"],
                  ["0.png 0", "1.png 1", "2.png 2", "3.png 3", "4.png 4"])
    (tmp_path / "images" / "4.png").unlink()
    dataset = load(tmp_path)
    assert dataset.formulas == ["a + b"]
    assert dataset.dropped == {"longer than 150 tokens": 1, "empty formula": 1,
                               "corrupt formula": 1, "image missing": 1}
    assert "1 samples, dropped 4" in dataset.report()
    assert len(load(tmp_path, max_len=200)) == 2
    assert load(tmp_path, ids=range(1, 5)).formulas == []


def test_load_bad_split_line_names_file_and_line(tmp_path):
    _write_layout(tmp_path, ["a"], ["0.png 0"])
    (tmp_path / "matching.txt").write_text("0.png 0\n0.png seven\n")
    with pytest.raises(ValueError, match=r"matching.txt:2: expected"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="split file not found"):
        load(tmp_path, split="train.lst")


def test_load_real_val_split(val_dir):
    dataset = load(val_dir, ids=range(7475))
    assert 7400 < len(dataset) <= 7475
    assert all(s.formula_id < 7475 for s in dataset.samples)


def test_load_kaggle_csv(tmp_path):
    images = tmp_path / "formula_images_processed"
    images.mkdir()
    Image.new("L", (40, 20), 255).save(images / "a.png")
    with (tmp_path / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["formula", "image"])
        writer.writerow([r"\frac{a}{b}", "a.png"])
        writer.writerow(["x", "missing.png"])
    dataset = load_csv(tmp_path / "train.csv")
    assert dataset.formulas == [r"\frac { a } { b }"]
    assert dataset.dropped == {"image missing": 1}


def test_build_dataset_renders_resumes_and_reports_failures(tmp_path):
    renderer = default_renderer()
    formulas = ["x^2+1", r"\frac{a}{b}", r"\frac{a}{", r"\alpha_i"]
    dataset = build_dataset(formulas, renderer, tmp_path, chunk_size=2, progress=False)
    assert dataset.formulas == ["x ^ { 2 } + 1", r"\frac { a } { b }", r"\alpha _ { i }"]
    assert dataset.dropped["failed to render"] == 1
    assert (tmp_path / "failed.tsv").read_text().startswith("2\t")
    reloaded = load(tmp_path)
    assert reloaded.formulas == dataset.formulas
    # a rerun renders only what is missing
    (tmp_path / "images" / "1.png").unlink()
    before = (tmp_path / "images" / "0.png").stat().st_mtime_ns
    again = build_dataset(formulas, renderer, tmp_path, chunk_size=2, progress=False)
    assert again.formulas == dataset.formulas
    assert (tmp_path / "images" / "0.png").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="holds different formulas"):
        build_dataset(["y"], renderer, tmp_path, progress=False)


@pytest.fixture
def archive_server(tmp_path):
    """A local HTTP server with a small im2latex-like archive: the download's real code path."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "im2latex_formulas.norm.lst").write_text("a + b\n")
    (served / "im2latex_train_filter.lst").write_text("0.png 0\n")
    png = io.BytesIO()
    Image.new("L", (40, 20), 255).save(png, format="PNG")
    with tarfile.open(served / "formula_images_processed.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("formula_images_processed/0.png")
        info.size = len(png.getvalue())
        archive.addfile(info, io.BytesIO(png.getvalue()))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()


def test_download_verifies_and_unpacks(tmp_path, archive_server):
    url, served = archive_server
    digest = hashlib.sha256((served / "im2latex_formulas.norm.lst").read_bytes()).hexdigest()
    files = [
        RemoteFile(url + "im2latex_formulas.norm.lst", "im2latex_formulas.norm.lst", digest),
        RemoteFile(url + "im2latex_train_filter.lst", "im2latex_train_filter.lst"),
        RemoteFile(url + "formula_images_processed.tar.gz", "formula_images_processed.tar.gz",
                   unpack=True),
    ]
    dest = download_im2latex100k(tmp_path / "im2latex", files, progress=False)
    dataset = load(dest, split="im2latex_train_filter.lst")
    assert dataset.formulas == ["a + b"]
    wrong = [RemoteFile(url + "im2latex_train_filter.lst", "other.lst", "0" * 64)]
    with pytest.raises(OSError, match="SHA-256 mismatch"):
        download_im2latex100k(tmp_path / "im2latex", wrong, progress=False)
    assert not (tmp_path / "im2latex" / "other.lst").exists()


def test_download_refuses_archive_escaping_its_folder(tmp_path, archive_server):
    url, served = archive_server
    with tarfile.open(served / "evil.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    files = [RemoteFile(url + "evil.tar.gz", "evil.tar.gz", unpack=True)]
    with pytest.raises(tarfile.TarError):
        download_im2latex100k(tmp_path / "dest", files, progress=False)
    assert not (tmp_path / "escaped.txt").exists()
    assert datasets.IM2LATEX_FILES[-1].unpack
