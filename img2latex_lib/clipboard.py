"""The system clipboard: an image in (a screenshot snipped to the clipboard), text out.

Through the standard tools of each display system: ``wl-paste``/``wl-copy`` (Debian
wl-clipboard) under Wayland, ``xclip`` under X11 (Debian xclip). Which one is used follows the
session: ``WAYLAND_DISPLAY`` for Wayland, ``DISPLAY`` for X11. Anything else (a text console, a
server over ssh, a tool not installed) raises :class:`ClipboardError` saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

#: Image types read from the clipboard, most preferred first.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/webp", "image/tiff")
TIMEOUT_S = 10


class ClipboardError(RuntimeError):
    """No clipboard, no tool for it, or nothing usable on it."""


def _system() -> str:
    """``"wayland"`` or ``"x11"``: the clipboard this session has (ClipboardError if none)."""
    if os.environ.get("WAYLAND_DISPLAY"):
        if shutil.which("wl-paste") and shutil.which("wl-copy"):
            return "wayland"
        if not os.environ.get("DISPLAY"):
            raise ClipboardError("clipboard: Wayland needs wl-clipboard (Debian wl-clipboard)")
    if os.environ.get("DISPLAY"):
        if shutil.which("xclip"):
            return "x11"
        raise ClipboardError("clipboard: X11 needs xclip (Debian xclip)")
    raise ClipboardError("clipboard: no display (neither WAYLAND_DISPLAY nor DISPLAY is set)")


def _run(command: list[str], data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as error:
        raise ClipboardError(f"clipboard: {command[0]} did not answer in {TIMEOUT_S} s") from error
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise ClipboardError(f"clipboard: {command[0]} failed"
                             + (f": {reason[-1]}" if reason else ""))
    return done.stdout


def clipboard_types() -> list[str]:
    """The types the clipboard offers now (e.g. ``image/png``, ``UTF8_STRING``)."""
    if _system() == "wayland":
        listed = _run(["wl-paste", "--list-types"])
    else:
        listed = _run(["xclip", "-selection", "clipboard", "-t", "TARGETS", "-o"])
    return listed.decode(errors="replace").split()


def read_image() -> bytes:
    """The encoded image on the clipboard (PNG preferred); ClipboardError when there is none."""
    offered = clipboard_types()
    kind = next((t for t in IMAGE_TYPES if t in offered), None)
    if kind is None:
        raise ClipboardError("clipboard: no image on it (it holds "
                             + (", ".join(offered[:4]) or "nothing") + ")")
    if _system() == "wayland":
        return _run(["wl-paste", "--no-newline", "--type", kind])
    return _run(["xclip", "-selection", "clipboard", "-t", kind, "-o"])


def copy_text(text: str) -> None:
    """Put ``text`` on the clipboard (the tool keeps serving it after this returns)."""
    if _system() == "wayland":
        command = ["wl-copy"]
    else:
        command = ["xclip", "-selection", "clipboard", "-i"]
    # the tool forks a process that keeps serving the selection: it must hold no pipe of ours
    with tempfile.TemporaryFile() as errors:
        tool = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=errors)
        tool.stdin.write(text.encode())
        tool.stdin.close()
        try:
            returncode = tool.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as late:
            tool.kill()
            raise ClipboardError(f"clipboard: {command[0]} did not answer in {TIMEOUT_S} s") \
                from late
        errors.seek(0)
        reason = errors.read().decode(errors="replace").strip()
    if returncode != 0:
        raise ClipboardError(f"clipboard: {command[0]} failed" + (f": {reason}" if reason else ""))
