"""Tests for img2latex_lib.formats: compact LaTeX that tokenizes back to the same tokens and
renders to the same pixels, delimiters, and MathML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2latex_lib.cli import main
from img2latex_lib.formats import MathMLError, compact, forms, mathml, wrapped
from img2latex_lib.render import LatexRenderer, latex_available
from img2latex_lib.synth import generate_formulas
from img2latex_lib.tokenizer import Vocab, to_latex, tokenize
from tests.test_cli import checkpoint, images  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "data" / "im2latex100k_val" / "formulas.norm.lst"
SHIPPED_VOCAB = Vocab.load(ROOT / "checkpoints" / "img2latex-base" / "vocab.json")
TEXT_MODE = (r"\text", r"\mbox", r"\hbox", r"\textrm", r"\textit", r"\textbf", r"\emph",
             r"\textsf", r"\texttt", r"\makebox", r"\fbox", r"\raisebox")
needs_latex = pytest.mark.skipif(not latex_available(), reason="pdflatex or gs not installed")


@pytest.mark.parametrize(("tokens", "expected"), [
    (r"\frac { a } { b } + x ^ { 2 }", r"\frac{a}{b}+x^{2}"),
    (r"\alpha x + \beta", r"\alpha x+\beta"),  # a control word before a letter keeps its space
    (r"\alpha 2", r"\alpha2"),
    (r"a - - b", "a- -b"),  # -- would read as an en dash
    (r"a \ b", r"a\ b"),  # a control space keeps the space that makes it one
    (r"\mathrm { e f f } _ { 1 }", r"\mathrm{eff}_{1}"),
    (r"\hspace { 0 . 4 i n } x", r"\hspace{0.4in}x"),
    (r"x ' ^ { 2 }", r"x'^{2}"),
    (r"\left( x \right) \left. \frac { 1 } { 2 } \right|",
     r"\left(x\right)\left.\frac{1}{2}\right|"),
    (r"\operatorname* { l i m } _ { n }", r"\operatorname*{lim}_{n}"),
    (r"\begin{array} { c c } a & b \\ c & d \end{array}", r"\begin{array}{cc}a&b\\c&d\end{array}"),
    (r"\alpha \, \beta", r"\alpha\,\beta"),
    ("", ""),
])
def test_compact_drops_only_the_spaces_tex_does_not_need(tokens, expected):
    assert compact(tokens) == expected
    assert tokenize(compact(tokens)) == tokenize(to_latex(tokens))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(SHIPPED_VOCAB.id_to_token[4:]), max_size=40))
def test_compact_tokenizes_back_to_the_same_tokens(tokens):
    formula = " ".join(tokens)
    assert tokenize(compact(formula)) == tokenize(to_latex(formula))


@pytest.mark.skipif(not VAL.exists(), reason="needs the im2latex-100k val data (data/README.md)")
def test_every_val_formula_round_trips():
    formulas = VAL.read_text().splitlines()
    assert [f for f in formulas if tokenize(compact(f)) != tokenize(to_latex(f))] == []


def _pixel_formulas() -> list[str]:
    """A few hundred formulas without text-mode commands (where the compact form writes words
    as typed, the token form's spaces are word spaces)."""
    formulas = VAL.read_text().splitlines()[:400] if VAL.exists() else generate_formulas(300, 3)
    return [f for f in formulas if not any(t in TEXT_MODE for t in f.split())]


@needs_latex
def test_compact_latex_renders_to_the_same_pixels():
    formulas = _pixel_formulas()
    assert len(formulas) >= 250
    renderer = LatexRenderer(template="im2latex")
    spaced = renderer.render_batch([to_latex(f) for f in formulas])
    tight = renderer.render_batch([compact(f) for f in formulas])
    differ = [f for f, a, b in zip(formulas, spaced, tight, strict=True)
              if (a.image is None) != (b.image is None) or (a.image is not None and not
                  np.array_equal(np.asarray(a.image), np.asarray(b.image)))]
    assert differ == []
    assert sum(r.image is not None for r in tight) >= 0.9 * len(formulas)


@pytest.mark.parametrize(("wrap", "expected"), [
    ("none", "x^{2}"), ("inline", "$x^{2}$"), ("display", r"\[x^{2}\]"),
    ("equation", "\\begin{equation}\nx^{2}\n\\end{equation}"),
])
def test_wrapped_adds_the_delimiters(wrap, expected):
    assert wrapped("x^{2}", wrap) == expected


def test_an_unknown_wrap_is_refused():
    with pytest.raises(ValueError, match="unknown wrap 'dollars'"):
        wrapped("x", "dollars")


MATHML_CASES = {
    r"\frac { a } { b }": "mfrac",
    r"x _ { i } ^ { 2 }": "msubsup",
    r"\left( \frac { 1 } { 2 } \right)": "mo",
    r"\begin{array} { c c } a & b \\ c & d \end{array}": "mtable",
    r"\hat { x } + \vec { v }": "mover",
    r"\mathbf { F } = \mathcal { L }": "mi",
    r"\sqrt [ 3 ] { x }": "mroot",
    r"\sum _ { i = 1 } ^ { n } i": "msubsup",  # inline: limits beside the sum
}


@pytest.mark.parametrize("formula", list(MATHML_CASES))
def test_mathml_is_well_formed_and_has_the_construct(formula):
    root = ET.fromstring(mathml(compact(formula)))
    assert root.tag == "{http://www.w3.org/1998/Math/MathML}math"
    tags = {element.tag.rpartition("}")[2] for element in root.iter()}
    assert MATHML_CASES[formula] in tags
    assert "\\" not in "".join(root.itertext())  # no command left unconverted


def test_mathml_display_and_errors():
    assert 'display="block"' in mathml("x", display=True)
    with pytest.raises(MathMLError, match="cannot convert to MathML: MissingEndError"):
        mathml(r"\begin{array}{c}a")
    with pytest.raises(MathMLError, match=r"\\left has no MathML form here"):
        mathml(r"\fbox{\left[x\right]}")  # it would come out as the text "\left[x\right]"


def test_forms_has_every_form():
    found = forms(r"\frac { a } { b }")
    assert found["latex"] == r"\frac{a}{b}" and found["tokens"] == r"\frac { a } { b }"
    assert found["inline"] == r"$\frac{a}{b}$" and found["display"] == r"\[\frac{a}{b}\]"
    assert found["mathml"].startswith("<math")
    assert forms(r"\fbox { \left[ x \right] }")["mathml"] is None


def test_cli_predict_prints_each_form(checkpoint, images, capsys):  # noqa: F811
    args = ["predict", str(images[0]), "--checkpoint", str(checkpoint)]
    assert main([*args, "--tokens"]) == 0
    tokens = capsys.readouterr().out.strip()
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == compact(tokens)
    assert main([*args, "--wrap", "inline"]) == 0
    assert capsys.readouterr().out.strip() == f"${compact(tokens)}$"
    assert main([*args, "--format", "mathml"]) == 0
    assert ET.fromstring(capsys.readouterr().out.strip()).get("display") == "block"
    assert main([*args, "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert set(record) == {"image", "latex", "tokens", "inline", "display", "mathml"}
    assert record["tokens"] == tokens and record["latex"] == compact(tokens)
    assert main([*args, "--format", "mathml", "--wrap", "inline"]) == 1
    assert "leave out --tokens and --wrap" in capsys.readouterr().err
