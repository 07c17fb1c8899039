"""The demo widget driven from Python: upload -> prediction -> result; bad upload -> message."""

import datetime
import html
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2latex_lib.checkpoints import save_checkpoint
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.formats import compact, mathml
from img2latex_lib.model import Config, build_model
from img2latex_lib.render import default_renderer
from img2latex_lib.tokenizer import Vocab
from img2latex_lib.widgets import MAX_UPLOAD_BYTES, Demo, demo
from tests.test_model import SMALL, randomized
from tests.test_training import FAST, broken_checkpoint

FORMULAS = ["x ^ { 2 } + 1", r"\frac { a } { b }", r"\alpha _ { i } = 0", r"\sqrt { z } < y"]


def tiny_checkpoint(directory: Path) -> Path:
    """A small model with random weights (its LaTeX is nonsense, but real) saved as a checkpoint."""
    vocab = Vocab.build(FORMULAS)
    model = build_model(Config(**{**SMALL, "vocab_size": len(vocab), "max_len": 12}),
                        verbose=False)
    rng = np.random.default_rng(5)
    model.set_weights([randomized(w, rng) for w in model.weights])
    return save_checkpoint(directory, model, vocab)


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def upload(app: Demo, name: str, data: bytes, kind: str = "image/png") -> None:
    """What the browser does: set FileUpload.value to the ipywidgets 8 structure."""
    app.upload.value = ({"name": name, "type": kind, "size": len(data),
                         "content": memoryview(data),
                         "last_modified": datetime.datetime.now(datetime.UTC)},)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Demo:
    return demo(tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny"))


TYPESET = r"x ^ { 2 } + \frac { a } { b }"


@pytest.fixture(scope="module")
def formula_png() -> bytes:
    return encoded(default_renderer().render(TYPESET))


def assert_shows(app: Demo, tokens: str, name: str, beam: int) -> None:
    """The demo shows the prediction ``tokens`` (the model's token form) as compact LaTeX."""
    latex = compact(tokens)
    assert app.latex_box.value == app.latex == latex
    assert app.rendered.value == f"$$ {html.escape(latex)} $$"
    assert app.status.startswith(f"{name}: predicted with beam size {beam} in ")
    assert html.escape(app.status) in app.message.value
    shown = Image.open(io.BytesIO(app.image.value))
    assert shown.mode == "L" and shown.width > shown.height > 5


def test_upload_is_predicted_and_shown(app, formula_png):
    app.beam.value = 1
    upload(app, "formula.png", formula_png)
    expected = app.producer.predict(formula_png)
    assert expected  # the random model says something, so the check below means something
    assert_shows(app, expected, "formula.png", 1)


def test_jpeg_upload_and_beam_change_predict_again(app, formula_png):
    jpeg = encoded(Image.open(io.BytesIO(formula_png)).convert("RGB"), "JPEG")
    app.beam.value = 1
    upload(app, "photo.jpg", jpeg, "image/jpeg")
    assert_shows(app, app.producer.predict(jpeg), "photo.jpg", 1)
    app.beam.value = 3  # moving the slider predicts the last image again with the new beam
    assert_shows(app, app.producer.predict(jpeg, beam_size=3), "photo.jpg", 3)
    assert not app.check.disabled  # a beam to choose from: the render check may be turned on
    app.check.value = True  # ticking it predicts again, checked by rendering
    expected = app.producer.predict(jpeg, beam_size=3, rerank=True)
    assert app.latex_box.value == compact(expected)
    assert app.status.startswith("photo.jpg: predicted with beam size 3, checked by rendering, in ")
    app.check.value = False
    app.beam.value = 1
    assert app.check.disabled


def test_scripted_use_by_path_bytes_and_text_box(app, formula_png, tmp_path):
    app.beam.value = 1
    path = tmp_path / "x.png"
    path.write_bytes(formula_png)
    expected = app.producer.predict(formula_png)
    assert app.predict_path(path) == compact(expected)
    assert_shows(app, expected, str(path), 1)
    assert app.predict_bytes(formula_png, name="mine.png") == compact(expected)
    assert_shows(app, expected, "mine.png", 1)
    app.path.value = str(path)
    assert_shows(app, expected, str(path), 1)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (with no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(
        b"IEND", b"")


BAD_UPLOADS = {
    "empty": (b"", "empty file"),
    "text": (b"\\frac{a}{b} is what I meant", "not an image"),
    "truncated": (None, "truncated or corrupt"),
    "blank": (encoded(Image.new("L", (200, 60), 255)), "blank image"),
    "huge": (png_header(60_000, 60_000), "downscale it first"),
    "heavy": (b"\0" * (MAX_UPLOAD_BYTES + 1), "more than the upload limit"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_upload_gives_a_message_and_clears_the_result(app, formula_png, case):
    data, reason = BAD_UPLOADS[case]
    if data is None:
        data = formula_png[: len(formula_png) // 2]
    app.beam.value = 1
    upload(app, "formula.png", formula_png)
    assert app.latex_box.value
    upload(app, f"{case}.png", data)  # must not raise
    assert app.status.startswith(f"{case}.png: ") and reason in app.status
    assert "\n" not in app.status and "#c62828" in app.message.value
    assert (app.latex_box.value, app.rendered.value, app.image.value) == ("", "", b"")
    app.beam.value = 2  # nothing to predict again after a failure
    assert app.status.startswith(f"{case}.png: ")


def test_a_tiny_image_is_predicted_with_a_warning(app):
    tiny = Image.new("L", (6, 6), 255)
    tiny.putpixel((3, 3), 0)
    assert app.predict_bytes(encoded(tiny, "PNG"), "tiny.png") is not None
    assert app.status.startswith("tiny.png: predicted with beam size")
    assert "(warning: the formula is only 1x1 pixels" in app.status
    assert "#e65100" in app.message.value, "shown in the warning colour"


def test_missing_path_is_a_message(app, tmp_path):
    missing = tmp_path / "nowhere.png"
    assert app.predict_path(missing) is None
    assert app.status == f"{missing}: file not found"


def test_without_a_checkpoint_the_widget_says_so(monkeypatch, tmp_path, formula_png):
    monkeypatch.setenv("IMG2LATEX_CHECKPOINT", str(tmp_path / "none"))
    app = demo()
    assert app.producer is None
    assert "No model loaded" in app.status and "no trained checkpoint there" in app.status
    assert app.upload.disabled and app.beam.disabled and app.path.disabled
    assert app.predict_bytes(formula_png) is None
    assert "No model loaded" in app.status


def _break_weights(folder: Path) -> None:
    data = (folder / "model.weights.h5").read_bytes()
    (folder / "model.weights.h5").write_bytes(data[: len(data) // 2])


BROKEN = {  # how to break a copy of the shipped small checkpoint, and what the widget says
    "config": ({"dropout": 2}, None, "{folder}/config.json: dropout must be a number in [0, 1), "
               "not 2"),
    "vocabulary": ({}, lambda folder: (folder / "vocab.json").unlink(),
                   "{folder}: checkpoint is missing vocab.json"),
    "weights": ({}, _break_weights, "{folder}/model.weights.h5: weights are corrupt or do not "
                "match config.json (Unable to synchronously open file (truncated file: "),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_checkpoint_is_the_disabled_widgets_message(tmp_path, formula_png, case):
    change, damage, message = BROKEN[case]
    folder = broken_checkpoint(tmp_path / "broken", change)
    if damage:
        damage(folder)
    app = demo(folder)  # must not raise
    assert app.producer is None and "\n" not in app.status
    assert app.status.startswith("No model loaded: " + message.format(folder=folder))
    assert app.upload.disabled and app.beam.disabled and app.path.disabled
    assert "#c62828" in app.message.value and app.predict_bytes(formula_png) is None


def test_a_broken_companion_is_the_disabled_widgets_message(tmp_path):
    companion = broken_checkpoint(tmp_path / "companion", {"embedding_dim": "eighty"})
    app = demo(FAST, companion=companion)
    assert app.producer is None
    assert app.status == (f"No model loaded: {companion / 'config.json'}: embedding_dim must be "
                          f"a positive integer, not 'eighty'")


def test_any_producer_works_and_the_demo_displays_as_a_widget(app):
    other = demo(producer=LatexProducer.from_model(app.producer.model, app.producer.vocab))
    assert other.producer is not app.producer
    bundle = other._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == other.widget.model_id
    with pytest.raises(ValueError, match="not both"):
        demo(checkpoint="x", producer=other.producer)


def test_a_second_models_beam_joins_the_render_check_when_ticked(app, formula_png, tmp_path):
    assert app.second.layout.display == "none"  # no companion, no second checkbox
    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    two = demo(checkpoint, companion=checkpoint)
    assert two.second.layout.display != "none" and two.second.description == "+ tiny's beam"
    # the companion stands in for a better-trained model that reads this formula
    two.producer.companions[0].nbest_lists = lambda items, beam_size, batch_size: [
        [(TYPESET, -0.1)] for _ in items]
    two.beam.value = 3
    assert two.second.disabled  # only with the render check
    two.check.value = True
    assert not two.second.disabled
    upload(two, "formula.png", formula_png)
    assert two.latex_box.value != compact(TYPESET)  # the random model's own beam misses it
    two.second.value = True  # ticking it predicts again, with the companion's candidates
    assert two.latex_box.value == compact(TYPESET)
    assert two.status.startswith("formula.png: predicted with beam size 3, checked by rendering "
                                 "with tiny's beam too, in ")
    two.check.value = False
    assert two.second.disabled and two.latex_box.value != compact(TYPESET)
    with pytest.raises(ValueError, match="not both"):
        demo(producer=two.producer, companion=checkpoint)


def test_the_box_shows_the_chosen_form_without_predicting_again(app, formula_png):
    upload(app, "formula.png", formula_png)
    latex, status = app.latex, app.status
    assert latex and app.latex_box.value == latex
    app.form.value = "inline"
    assert app.latex_box.value == f"${latex}$"
    app.form.value = "display"
    assert app.latex_box.value == f"\\[{latex}\\]"
    app.form.value = "mathml"
    assert app.latex_box.value in (mathml(latex), ) or app.latex_box.value.startswith("<!--")
    assert app.status == status  # no new prediction
    app.form.value = "latex"
    assert app.latex_box.value == latex
    assert app.rendered.value == f"$$ {html.escape(latex)} $$"  # the preview stays
    assert "navigator.clipboard.writeText" in app.copy.value
