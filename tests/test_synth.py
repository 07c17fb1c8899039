"""Tests for the formula generator: determinism, well-formed output, coverage, real compilation."""

import json
import re
import shutil
import statistics
import subprocess
import sys
from collections import Counter

import pytest

from img2latex_lib.synth import (
    DEV_TEST_START,
    MAX_WIDTH_PT,
    FormulaGenerator,
    default_statistics,
    estimate_width,
    fit_statistics,
    generate_formulas,
    main,
)
from img2latex_lib.tokenizer import MAX_LEN, normalize, tokenize

# Hand-written formulas in the im2latex style (not from any data set).
CORPUS = [
    r"x ^ { 2 } + y ^ { 2 } = r ^ { 2 } .",
    r"\frac { d } { d t } \left( \frac { \partial L } { \partial \dot { q } } \right) = 0",
    r"E = m c ^ { 2 } \, ,",
    r"\int _ { 0 } ^ { \infty } d x \, e ^ { - a x } = \frac { 1 } { a }",
    r"\sum _ { n = 1 } ^ { N } n = \frac { N ( N + 1 ) } { 2 }",
    r"\psi ( x ) = \sqrt { \frac { 2 } { L } } \mathrm { s i n } ( k x )",
    r"A _ { \mu } \to A _ { \mu } + \partial _ { \mu } \Lambda",
    r"M = \left( \begin{array} { c c } { a } & { b } \\ { c } & { d } \\ \end{array} \right)",
    r"\bar { \psi } \gamma ^ { \mu } \psi \quad \mathrm { f o r } \quad \mu = 0 , 1",
    r"{ \cal L } = - \frac { 1 } { 4 } F _ { \mu \nu } F ^ { \mu \nu } ;",
    r"| \phi \rangle = \alpha | 0 \rangle + \beta | 1 \rangle",
    r"\hat { H } = \frac { p ^ { 2 } } { 2 m } + V ( x ) \; .",
]

FAMILIES = {
    "fraction": r"\\frac ",
    "superscript": r"\^ \{",
    "subscript": r"_ \{",
    "root": r"\\sqrt ",
    "left/right": r"\\left\S* .* \\right",
    "array": r"\\begin\{array\} \{ [lcr ]+ \} .* \\end\{array\}",
    "big operator": r"\\(sum|int|prod|oint) ",
    "accent": r"\\(bar|hat|tilde|vec|dot|overline|widetilde) \{",
    "font": r"\\math(rm|cal|bf|sf|it) \{",
    "function name": r"\\mathrm \{ (s i n|c o s|e x p|l n|l o g) \}",
    "Greek": r"\\(alpha|beta|mu|nu|pi|phi|psi|Gamma|Delta|Omega) ",
    "spacing": r"(\\[,;!] |\\q?quad |~ )",
    "relation": r"(= |\\equiv |\\leq |\\sim )",
}


@pytest.fixture(scope="module")
def samples() -> list[str]:
    return generate_formulas(1000, seed=1)


def test_same_seed_same_formulas():
    assert generate_formulas(50, seed=3) == generate_formulas(50, seed=3)
    first, second = FormulaGenerator(7), FormulaGenerator(7)
    assert [first.generate() for _ in range(20)] == [second.generate() for _ in range(20)]


def test_different_seeds_differ():
    assert generate_formulas(20, seed=1) != generate_formulas(20, seed=2)
    assert len(set(generate_formulas(200, seed=4))) == 200


def test_tokens_round_trip_and_are_normalized(samples):
    for formula in samples:
        assert " ".join(tokenize(formula)) == formula
        assert normalize(formula) == formula


def test_groups_and_pairs_are_balanced(samples):
    for formula in samples:
        tokens = formula.split()
        depth = 0
        for token in tokens:
            depth += {"{": 1, "}": -1}.get(token, 0)
            assert depth >= 0, formula
        assert depth == 0, formula
        lefts = sum(bool(re.match(r"\\left(?![a-z])", t)) for t in tokens)
        assert lefts == sum(bool(re.match(r"\\right(?![a-z])", t)) for t in tokens), formula
        assert tokens.count(r"\begin{array}") == tokens.count(r"\end{array}"), formula


def test_lengths_within_limits_and_like_real_ones(samples):
    lengths = [len(formula.split()) for formula in samples]
    assert 1 <= min(lengths) and max(lengths) <= MAX_LEN
    assert 40 <= statistics.median(lengths) <= 62  # real im2latex-100k median: about 50


def test_formulas_fit_the_page_width(samples):
    widths = [estimate_width(formula.split()) for formula in samples]
    assert max(widths) <= MAX_WIDTH_PT
    assert max(widths) > 0.8 * MAX_WIDTH_PT  # the limit binds: long formulas come near it


@pytest.mark.parametrize("family", FAMILIES)
def test_every_structure_family_appears(samples, family):
    found = sum(bool(re.search(FAMILIES[family], formula + " ")) for formula in samples)
    assert found >= 5, f"{family} appears in only {found} of 1000 formulas"


def test_shipped_statistics_were_fitted_before_the_dev_test_lines():
    stats = default_statistics()
    assert stats["source"]["lines"] == DEV_TEST_START
    assert stats["formulas"] <= DEV_TEST_START


def test_fitted_generator_uses_only_tokens_of_its_corpus():
    stats = fit_statistics(CORPUS, rounds=2, samples=100)
    corpus_tokens = {t for formula in CORPUS for t in tokenize(normalize(formula))}
    generator = FormulaGenerator(0, stats)
    generated = [generator.generate() for _ in range(300)]
    assert {t for formula in generated for t in formula.split()} <= corpus_tokens
    frac_share = sum(r"\frac" in f for f in generated) / len(generated)
    assert 0.2 < frac_share < 0.8  # 5 of the 12 corpus formulas have a fraction


def test_fit_rejects_no_formulas_and_generator_rejects_bad_statistics():
    with pytest.raises(ValueError, match="no formulas"):
        fit_statistics(["", "  "])
    with pytest.raises(ValueError, match="version"):
        FormulaGenerator(0, {"version": 0})


def test_command_line_fits_only_the_first_lines(tmp_path, capsys):
    source = tmp_path / "formulas.norm.lst"
    source.write_text("\n".join(CORPUS + [r"\Omega \Omega \Omega"] * 50) + "\n")
    out = tmp_path / "stats.json"
    main(
        [
            "fit",
            str(source),
            "--lines",
            str(len(CORPUS)),
            "--out",
            str(out),
            "--rounds",
            "2",
            "--samples",
            "50",
        ]
    )
    assert f"fitted on {len(CORPUS)} formulas" in capsys.readouterr().out
    stats = json.loads(out.read_text())
    assert stats["formulas"] == len(CORPUS)
    assert FormulaGenerator(0, stats).generate()
    assert not any(r"\Omega" in key for group in stats["tokens"].values() for key in group)


def test_module_command_samples_what_the_api_generates():
    result = subprocess.run(
        [sys.executable, "-m", "img2latex_lib.synth", "sample", "-n", "5", "--seed", "9"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == generate_formulas(5, seed=9)


def test_real_val_length_and_token_distribution(val_dir):
    lines = (val_dir / "formulas.norm.lst").read_text().splitlines()[:DEV_TEST_START]
    real = [normalize(line) for line in lines]
    generated = generate_formulas(2000, seed=5)
    real_deciles, generated_deciles = (
        statistics.quantiles([len(f.split()) for f in formulas], n=10)
        for formulas in (real, generated)
    )
    for real_q, generated_q in zip(real_deciles, generated_deciles, strict=True):
        assert abs(generated_q - real_q) <= 0.1 * real_q + 2
    real_counts = Counter(t for f in real for t in f.split())
    generated_counts = Counter(t for f in generated for t in f.split())
    real_total, generated_total = real_counts.total(), generated_counts.total()
    distance = 0.5 * sum(
        abs(real_counts[t] / real_total - generated_counts[t] / generated_total)
        for t in real_counts | generated_counts
    )
    assert distance < 0.08


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_generated_formulas_compile_in_the_im2latex_template():
    from img2latex_lib.render import LatexRenderer, latex_available

    if not latex_available():
        pytest.skip("LatexRenderer needs pdflatex and Ghostscript")
    formulas = generate_formulas(30, seed=11)
    results = LatexRenderer(template="im2latex", strict=True).render_batch(formulas)
    failures = [f"{r.formula}: {r.error}" for r in results if r.error is not None]
    assert not failures, "\n".join(failures)
