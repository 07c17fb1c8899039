"""Tests for img2latex_lib.clipboard and predict --clipboard / --copy, for real: an X server
(Xvfb) and xclip, the tools a desktop has."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from img2latex_lib import clipboard
from img2latex_lib.cli import main
from img2latex_lib.clipboard import ClipboardError, copy_text, read_image
from tests.test_cli import checkpoint, images  # noqa: F401  (fixtures)

needs_x = pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xclip") is None,
                             reason="needs Xvfb and xclip (Debian xvfb, xclip)")


@pytest.fixture(scope="module")
def display():
    """A private X server; its name (``:N``)."""
    for number in range(91, 99):
        name = f":{number}"
        server = subprocess.Popen(["Xvfb", name, "-screen", "0", "320x240x24", "-nolisten", "tcp"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):  # until the server answers (or has died: the number is taken)
            probe = subprocess.run(["xclip", "-selection", "clipboard", "-o"],
                                   capture_output=True, env={"DISPLAY": name})
            if server.poll() is not None or b"open display" not in probe.stderr:
                break
            time.sleep(0.1)
        if server.poll() is None:
            yield name
            server.terminate()
            server.wait()
            return
    pytest.skip("no free X display number")


@pytest.fixture
def x11(display, monkeypatch):
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", display)
    return display


def _xclip_in(kind: str, data: bytes) -> None:
    subprocess.run(["xclip", "-selection", "clipboard", "-t", kind, "-i"], input=data,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _xclip_out() -> str:
    return subprocess.run(["xclip", "-selection", "clipboard", "-o"], capture_output=True,
                          check=True).stdout.decode()


@needs_x
def test_copied_text_is_on_the_clipboard(x11):
    copy_text("\\frac{a}{b} ł")
    assert _xclip_out() == "\\frac{a}{b} ł"


@needs_x
def test_an_image_is_read_back_as_put_there_and_text_is_not_an_image(x11, images):  # noqa: F811
    _xclip_in("image/png", images[0].read_bytes())
    assert read_image() == images[0].read_bytes()
    copy_text("just text")
    with pytest.raises(ClipboardError, match="no image on it"):
        read_image()


def test_no_display_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(ClipboardError, match="no display"):
        copy_text("x")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(clipboard.shutil, "which", lambda name: None)
    with pytest.raises(ClipboardError, match=r"X11 needs xclip \(Debian xclip\)"):
        read_image()


@needs_x
def test_cli_predicts_the_clipboard_image_and_copies_the_result(x11, checkpoint, images,  # noqa: F811
                                                                 capsys):
    _xclip_in("image/png", images[1].read_bytes())
    args = ["predict", "--checkpoint", str(checkpoint)]
    assert main([*args, "--clipboard", "--copy", "--wrap", "inline"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$") and printed.endswith("$")
    assert _xclip_out() == printed  # the image gave way to its LaTeX
    assert main([*args, str(images[1])]) == 0
    assert f"${capsys.readouterr().out.strip()}$" == printed  # the same image from a file
    assert main([*args, "--clipboard"]) == 1  # text on the clipboard now, not an image
    assert "img2latex: clipboard: no image on it" in capsys.readouterr().err
    assert main(args) == 1
    assert "give image files, - (standard input) or --clipboard" in capsys.readouterr().err


def test_cli_without_a_clipboard_still_prints(monkeypatch, checkpoint, images, capsys):  # noqa: F811
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    assert main(["predict", str(images[0]), "--checkpoint", str(checkpoint), "--copy"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip()  # the prediction is printed all the same
    assert captured.err.strip().splitlines() == [
        "img2latex: clipboard: no display (neither WAYLAND_DISPLAY nor DISPLAY is set)"]
