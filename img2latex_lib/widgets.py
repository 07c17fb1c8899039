"""The interactive demo: upload an image of a formula, get its LaTeX, see it typeset by MathJax.

``demo()`` returns a :class:`Demo`, which a notebook displays as a widget: a file upload (PNG or
JPEG), a beam size slider, a render check (optionally with a second model's candidates), a text
box for an image path, a status line, and the result (the image as the model reads it, the
predicted LaTeX in a text box with a copy button, in the form chosen: compact LaTeX, ``$…$``,
``\\[…\\]`` or MathML, and the formula rendered by MathJax). The same object predicts from code
(:meth:`Demo.predict_path`, :meth:`Demo.predict_bytes`), so everything the widget does is usable
without a browser.
"""

from __future__ import annotations

import html
import io
import time
from pathlib import Path

import ipywidgets as widgets
from PIL import Image

from .checkpoints import CheckpointError
from .decoding import LatexProducer
from .formats import MathMLError, compact, mathml, wrapped
from .inputs import input_warnings
from .preprocess import ImageError, ImageSource, crop_to_ink, load_image

#: The forms the LaTeX box offers: (label, value).
FORMS = (("LaTeX", "latex"), ("$…$", "inline"), ("\\[…\\]", "display"), ("MathML", "mathml"))
#: A button that copies the box's text in the browser (the clipboard of the user's machine, wherever
#: the kernel runs); the text is found from the button, so several demos on a page stay apart.
COPY_BUTTON = ('<button class="img2latex-copy-button" title="copy to the clipboard" onclick="'
               "const box = this.closest('.img2latex-demo').querySelector("
               "'.img2latex-latex textarea'); navigator.clipboard.writeText(box.value).then("
               "() => { this.textContent = 'Copied'; setTimeout(() => "
               "{ this.textContent = 'Copy'; }, 1500); });\">Copy</button>")

#: Largest upload accepted, in bytes (a formula image is rarely above a few hundred kB).
MAX_UPLOAD_BYTES = 20 * 2**20
#: The shown image is scaled down to fit this box (width, height) in pixels.
PREVIEW_SIZE = (800, 300)
_COLORS = {"info": "#444", "ok": "#2e7d32", "warning": "#e65100", "error": "#c62828"}


def _png_bytes(image: Image.Image) -> bytes:
    preview = image.copy()
    preview.thumbnail(PREVIEW_SIZE)
    buffer = io.BytesIO()
    preview.save(buffer, "PNG")
    return buffer.getvalue()


def _check_upload(data: bytes, name: str) -> None:
    """Refuse an empty or oversized upload before decoding it."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"{name}: file is {len(data) / 2**20:.1f} MB, more than the upload "
                         f"limit of {MAX_UPLOAD_BYTES // 2**20} MB; downscale it first")


class Demo:
    """The demo's widgets and the predictions behind them.

    Attributes: ``upload`` (FileUpload), ``beam`` (IntSlider), ``check`` (Checkbox: render the
    beam's candidates and keep the one that reproduces the image), ``second`` (Checkbox, shown when
    the producer has companions: their beams join the check), ``path`` (Text: an image path,
    predicted on Enter), ``message`` (HTML status line, its plain text in ``status``),
    ``image`` (the image as loaded), ``form`` (ToggleButtons: compact LaTeX, ``$…$``,
    ``\\[…\\]`` or MathML), ``copy`` (a button that copies the box in the browser),
    ``latex_box`` (Textarea with the prediction in that form), ``latex`` (the prediction as
    compact LaTeX), ``rendered``
    (HTMLMath: the LaTeX typeset by MathJax), ``output`` (the box holding the last three) and
    ``widget`` (everything). Without a producer the controls are disabled and ``message`` says
    why (``notice``).
    """

    def __init__(self, producer: LatexProducer | None, notice: str | None = None):
        self.producer = producer
        self.upload = widgets.FileUpload(accept=".png,.jpg,.jpeg,image/png,image/jpeg",
                                         multiple=False, description="Upload image")
        self.beam = widgets.IntSlider(value=1, min=1, max=10, description="Beam size",
                                      continuous_update=False)
        self.check = widgets.Checkbox(value=False, description="check by rendering",
                                      indent=False, disabled=True,
                                      tooltip="render the beam's candidates and keep the one "
                                      "that reproduces the image (beam size 2 or more)")
        companions = producer.companions if producer else []
        self._companions = ", ".join(c.checkpoint_dir.name for c in companions)
        self.second = widgets.Checkbox(value=False, description=f"+ {self._companions}'s beam",
                                       indent=False, disabled=True,
                                       tooltip="the render check also tries the candidates of "
                                       "this second model's beam (slower, more often right)",
                                       layout=widgets.Layout(display="" if companions else "none"))
        self.path = widgets.Text(placeholder="... or type an image path and press Enter",
                                 description="Image path", continuous_update=False,
                                 layout=widgets.Layout(width="60%"))
        self.message = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(
            max_width="100%", align_self="flex-start", margin="8px 0"))  # natural size
        self.latex_box = widgets.Textarea(placeholder="the predicted LaTeX appears here",
                                          description="LaTeX", rows=3,
                                          layout=widgets.Layout(width="95%"))
        self.form = widgets.ToggleButtons(options=FORMS, value="latex",
                                          tooltips=["compact LaTeX", "inline math",
                                                    "display math", "MathML"],
                                          style={"button_width": "80px"})
        self.copy = widgets.HTML(COPY_BUTTON)
        self.rendered = widgets.HTMLMath()
        self.output = widgets.VBox([
            self.image,
            widgets.HBox([self.form, self.copy], layout=widgets.Layout(align_items="center")),
            self.latex_box, self.rendered])
        self.widget = widgets.VBox([
            widgets.HTML("<b>Img2LaTeX</b>: upload a PNG or JPEG image of a formula"),
            widgets.HBox([self.upload, self.beam, self.check, self.second]),
            self.path,
            self.message,
            self.output,
        ])
        for widget, name in ((self.widget, "demo"), (self.upload, "upload"),
                             (self.latex_box, "latex"), (self.rendered, "rendered"),
                             (self.form, "form"), (self.copy, "copy"),
                             (self.message, "message")):
            widget.add_class(f"img2latex-{name}")
        self.status = ""
        self._last: tuple[ImageSource, str] | None = None
        self.latex = ""
        """The last prediction as compact LaTeX (the box shows it in the chosen form)."""
        if producer is None:
            for control in (self.upload, self.beam, self.path):
                control.disabled = True
            self._say(notice or "No model loaded.", "error")
        else:
            self._say("Upload an image (or type a path) to see its LaTeX.", "info")
        self.upload.observe(self._on_upload, names="value")
        self.beam.observe(self._on_beam, names="value")
        self.check.observe(self._on_beam, names="value")
        self.second.observe(self._on_beam, names="value")
        self.path.observe(self._on_path, names="value")
        self.form.observe(self._on_form, names="value")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def predict_path(self, path: str | Path) -> str | None:
        """Predict the LaTeX of an image file and show it; None (and a message) if it fails."""
        return self._predict(Path(path), str(path))

    def predict_bytes(self, data: bytes, name: str = "<bytes>") -> str | None:
        """Predict the LaTeX of an encoded image (PNG, JPEG, ...) and show it; None (and a
        message naming ``name``) if it fails."""
        return self._predict(bytes(data), name)

    def _predict(self, source: ImageSource, name: str) -> str | None:
        if self.producer is None:
            return None
        try:
            if isinstance(source, bytes):
                _check_upload(source, name)
            image = load_image(source, name)
            crop_to_ink(image, name=name)  # refuse a blank image with its name in the message
        except ImageError as error:
            return self._fail(str(error))
        self._last = (source, name)
        rerank = self.check.value and self.beam.value > 1
        second = rerank and self.second.value
        how = f"beam size {self.beam.value}"
        if rerank:
            how += (f", checked by rendering with {self._companions}'s beam too," if second
                    else ", checked by rendering,")
        self._say(f"{name}: predicting with {how} ...", "info")
        start = time.perf_counter()
        latex = compact(self.producer.predict(image, beam_size=self.beam.value, rerank=rerank,
                                              companions=second))
        seconds = time.perf_counter() - start
        self.image.value = _png_bytes(image)
        self.latex = latex
        self.latex_box.value = self._in_form(latex)
        self.rendered.value = f"$$ {html.escape(latex)} $$" if latex else ""
        outcome = "predicted" if latex else "the model predicted an empty formula"
        config = self.producer.config
        caveats = input_warnings(image, name, config.image_height, config.max_width)
        self._say(" ".join([f"{name}: {outcome} with {how} in {seconds:.1f} s", *(
            f"(warning: {line.removeprefix(name + ': ')})" for line in caveats)]),
            "warning" if caveats else "ok")
        return latex

    def _in_form(self, latex: str) -> str:
        """``latex`` in the form chosen with :attr:`form`."""
        if not latex or self.form.value == "latex":
            return latex
        if self.form.value == "mathml":
            try:
                return mathml(latex)
            except MathMLError as error:
                return f"<!-- {error} -->"
        return wrapped(latex, self.form.value)

    def _on_form(self, change: dict) -> None:
        self.latex_box.value = self._in_form(self.latex)

    def _fail(self, text: str) -> None:
        self.image.value = b""
        self.latex = ""
        self.latex_box.value = ""
        self.rendered.value = ""
        self._last = None
        self._say(text, "error")

    def _say(self, text: str, kind: str) -> None:
        self.status = text
        self.message.value = f'<span style="color:{_COLORS[kind]}">{html.escape(text)}</span>'

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if files:
            upload = files[0]
            self.predict_bytes(upload["content"].tobytes(), upload["name"])

    def _on_beam(self, change: dict) -> None:
        self.check.disabled = self.producer is None or self.beam.value < 2
        self.second.disabled = self.check.disabled or not self.check.value
        if self._last is not None:
            self._predict(*self._last)

    def _on_path(self, change: dict) -> None:
        if change["new"].strip():
            self.predict_path(change["new"].strip())


def demo(
    checkpoint: str | Path | None = None, producer: LatexProducer | None = None,
    companion: str | Path | None = None,
) -> Demo:
    """The demo widget for ``producer``, or for the model in ``checkpoint`` (default: the shipped
    one), with ``companion``'s beam offered to the render check (e.g. the shipped
    ``img2latex-fast``). Without a usable checkpoint, the widget says so instead of predicting."""
    if producer is not None and (checkpoint is not None or companion is not None):
        raise ValueError("pass a checkpoint (and a companion) or a producer, not both")
    if producer is None:
        try:
            producer = LatexProducer(checkpoint, companions=[companion] if companion else [])
        except CheckpointError as error:
            return Demo(None, f"No model loaded: {error}")
    return Demo(producer)
