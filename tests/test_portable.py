"""Tests for img2latex_lib.portable: what KaTeX and MathML converters lack, rewritten; KaTeX in
Node says which formulas it typesets."""

from __future__ import annotations

import shutil

import pytest

from img2latex_lib.cli import main
from img2latex_lib.formats import compact, mathml
from img2latex_lib.portable import KatexUnavailable, katex_errors, portable
from img2latex_lib.styles.web import engine_dir
from tests.test_cli import checkpoint, images  # noqa: F401  (fixtures)

needs_katex = pytest.mark.skipif(shutil.which("node") is None or engine_dir("katex") is None,
                                 reason="needs Node.js (Debian nodejs) and libjs-katex")

#: im2latex-100k spellings (each from a real val formula) and what portable makes of them.
REWRITES = [
    (r"A \sb \mu = F \sp { \mu \nu }", r"A _ \mu = F ^ { \mu \nu }"),
    (r"\mathrm { \boldmath ~ \phi ~ }", r"\mathrm { ~ \phi ~ }"),
    (r"\mathbf { \nabla } \; ^ { * } K", r"\mathbf { \nabla } \; { } ^ { * } K"),
    (r"\delta _ { _ \ominus }", r"\delta _ { { } _ \ominus }"),
    (r"x = 1 \label { e q 1 } \nonumber", "x = 1"),
    (r"\hspace { . 3 t r u e c m } x", r"\hspace { . 3 c m } x"),
    (r"{ \mit \Omega } + { \sl g }", r"{ \it \Omega } + { \it g }"),
    (r"\O = \l + \ae", r"\text { Ø } = \text { ł } + \text { æ }"),
    (r"\fbox { \tilde { \varphi } }", r"\boxed { \tilde { \varphi } }"),
    (r"\mbox { i f } \makebox { d i l a t o n }", r"\text { i f } \text { d i l a t o n }"),
    (r"a \* b \- c \slash d", "a b c / d"),
    (r"T ( x ) \vspace { - 0 . 2 c m }", "T ( x )"),
    (r"x = 0 , \ ", "x = 0 ,"),  # a space at the very end
    (r"\dag \vert x \vert", r"\dagger | x |"),
    (r"\frac { a } { b }", r"\frac { a } { b }"),  # what every engine reads stays
]


@pytest.mark.parametrize(("before", "after"), REWRITES)
def test_portable_rewrites_what_other_engines_lack(before, after):
    assert portable(before) == after
    assert portable(after) == after  # idempotent


@needs_katex
def test_katex_typesets_the_rewritten_formulas_only():
    befores = [compact(before) for before, after in REWRITES if before != after]
    afters = [compact(after) for before, after in REWRITES if before != after]
    assert sum(e is not None for e in katex_errors(befores)) >= len(befores) - 2
    assert katex_errors(afters) == [None] * len(afters)
    assert "Undefined control sequence" in katex_errors([r"\foo"])[0]


def test_katex_errors_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(KatexUnavailable, match="needs Node.js"):
        katex_errors(["x"])


def test_rewritten_formulas_convert_to_mathml_without_leftover_commands():
    for _, after in REWRITES:
        assert mathml(compact(after)).startswith("<math")  # MathMLError on a leftover command


def test_cli_predict_katex(checkpoint, images, capsys):  # noqa: F811
    args = ["predict", str(images[0]), "--checkpoint", str(checkpoint)]
    assert main([*args, "--tokens"]) == 0
    tokens = capsys.readouterr().out.strip()
    assert main([*args, "--katex", "--wrap", "display"]) == 0
    assert capsys.readouterr().out.strip() == rf"\[{compact(portable(tokens))}\]"
