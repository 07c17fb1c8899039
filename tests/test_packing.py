"""Tests for img2latex_lib.packing: packs keep formulas and the look of images, in few bytes."""

from __future__ import annotations

import lzma
import shutil

import numpy as np
import pytest
from PIL import Image

from img2latex_lib.batching import BucketedDataset
from img2latex_lib.cli import main
from img2latex_lib.datasets import build_dataset
from img2latex_lib.packing import PackError, read_pack, shrink_image, write_pack
from img2latex_lib.preprocess import crop_to_ink, load_image, prepare_image
from img2latex_lib.render import default_renderer
from img2latex_lib.tokenizer import Vocab

FORMULAS = [r"x ^ { 2 } + 1", r"\frac { a } { b }", r"\sum _ { i = 1 } ^ { n } i", r"\alpha"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return folder, build_dataset(FORMULAS, default_renderer(dpi=300), folder, progress=False)


def test_round_trip_keeps_formulas_and_shrinks_tall_images(rendered, tmp_path):
    _, dataset = rendered
    counts = write_pack(tmp_path / "a.pack", dataset.images, dataset.formulas, max_height=40,
                        levels=16)
    assert counts == {"packed": 4, "skipped": 0, "bytes": (tmp_path / "a.pack").stat().st_size}
    images, formulas = read_pack(tmp_path / "a.pack")
    assert formulas == dataset.formulas
    for image, source in zip(images, dataset.images, strict=True):
        original = crop_to_ink(load_image(source))
        assert image.dtype == np.uint8 and image.shape[0] == min(40, original.height)
        assert abs(image.shape[1] / image.shape[0] - original.width / original.height) < 0.2
        assert set(np.unique(image)) <= {round(17 * k) for k in range(16)}  # 16 grey levels
    # at the default size (twice the input height) what the model sees barely changes
    prepared = prepare_image(shrink_image(dataset.images[2]))
    reference = prepare_image(dataset.images[2])
    assert prepared.shape == reference.shape
    assert np.abs(prepared - reference).mean() < 0.03


def test_small_images_are_kept_at_their_size(rendered):
    _, dataset = rendered
    original = crop_to_ink(load_image(dataset.images[3]))
    assert shrink_image(dataset.images[3], max_height=10_000).shape == (original.height,
                                                                          original.width)


def test_unusable_images_are_left_out_and_counted(rendered, tmp_path):
    _, dataset = rendered
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 20), 255).save(blank)
    counts = write_pack(tmp_path / "b.pack", [blank, *dataset.images[:2]],
                        ["y", *dataset.formulas[:2]], workers=2)
    assert counts["packed"] == 2 and counts["skipped"] == 1
    assert read_pack(tmp_path / "b.pack")[1] == dataset.formulas[:2]
    with pytest.raises(ValueError, match="none of the 1 images is usable"):
        write_pack(tmp_path / "c.pack", [blank], ["y"])
    assert not (tmp_path / "c.pack").exists()


def test_bad_packs_are_one_line_errors_naming_the_file(rendered, tmp_path):
    _, dataset = rendered
    with pytest.raises(PackError, match="missing.pack: pack file not found"):
        read_pack(tmp_path / "missing.pack")
    (tmp_path / "text.pack").write_text("formulas, not a pack")
    with pytest.raises(PackError, match=r"text.pack: not a readable pack \("):
        read_pack(tmp_path / "text.pack")
    write_pack(tmp_path / "good.pack", dataset.images, dataset.formulas)
    data = (tmp_path / "good.pack").read_bytes()
    (tmp_path / "cut.pack").write_bytes(data[: len(data) // 2])
    with pytest.raises(PackError, match="cut.pack: not a readable pack"):
        read_pack(tmp_path / "cut.pack")
    raw = lzma.decompress(data).replace(b"version", b"versiom")
    (tmp_path / "other.pack").write_bytes(lzma.compress(raw))
    with pytest.raises(PackError, match="other.pack: not a readable pack"):
        read_pack(tmp_path / "other.pack")


def test_pack_images_batch_like_image_files(rendered, tmp_path):
    _, dataset = rendered
    write_pack(tmp_path / "d.pack", dataset.images, dataset.formulas)
    images, formulas = read_pack(tmp_path / "d.pack")
    vocab = Vocab.build(formulas)
    packed = BucketedDataset(images, formulas, vocab, batch_size=4, shuffle=False)
    files = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=4, shuffle=False)
    (x_packed, tokens_packed), _ = packed[0]
    (x_files, tokens_files), _ = files[0]
    assert x_packed.shape == x_files.shape and (tokens_packed == tokens_files).all()


def test_cli_packs_data_sets_and_trains_on_a_repeated_pack(rendered, tmp_path, capsys):
    folder, _ = rendered
    pack = tmp_path / "train.pack"
    assert main(["pack", str(pack), "--data", f"{folder}:0-2", "--workers", "1"]) == 0
    assert "train.pack: 3 images" in capsys.readouterr().out
    assert read_pack(pack)[1] == FORMULAS[:3]
    assert main(["pack", str(tmp_path / "train.zip"), "--data", str(folder)]) == 1
    assert "train.zip: a pack's name must end in .pack" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "--data", f"{pack}x2", "--max_steps", "2", "--batch_size", "2",
                 "--decoder_units", "16", "--enc_out_dim", "16", "--embedding_dim", "8",
                 "--attention_heads", "1", "--attention_head_size", "8",
                 "--cnn_widths", "4,8,8,8,8", "--checkpoint_every", "0",
                 "--save_dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "train.pack: 3 samples, used 2 times" in out
    assert (run / "last" / "model.weights.h5").exists()
    assert main(["train", "--data", f"{pack}:0-1", "--save_dir", str(run)]) == 1
    assert "a pack takes no formula ids" in capsys.readouterr().err
    assert main(["pack", str(pack), "--data", f"{folder}:2-0"]) == 1
    assert f"{folder}: 2-0: expected FIRST-LAST" in capsys.readouterr().err
    assert read_pack(pack)[1] == FORMULAS[:3]  # the pack already written is left as it was


def test_a_folder_whose_name_ends_like_a_repeat_count_is_read_as_named(rendered, tmp_path, capsys):
    folder, dataset = rendered
    twin = tmp_path / "renders_x2"
    shutil.copytree(folder, twin)
    assert main(["pack", str(tmp_path / "a.pack"), "--data", str(twin), "--workers", "1"]) == 0
    assert read_pack(tmp_path / "a.pack")[1] == dataset.formulas
    assert main(["pack", str(tmp_path / "b.pack"), "--data", f"{twin}x2", "--workers", "1"]) == 0
    assert read_pack(tmp_path / "b.pack")[1] == dataset.formulas * 2
    capsys.readouterr()
