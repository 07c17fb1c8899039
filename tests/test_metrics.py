"""Metrics against hand-computed cases, nltk's BLEU (when installed) and real renders."""

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from img2latex_lib.compare import bitmaps_match, ink_mask
from img2latex_lib.metrics import (
    align,
    bleu4,
    compile_rate,
    compiles,
    corpus_image_match,
    edit_distance,
    edit_score,
    evaluate,
    exact_match,
    format_table,
    image_match,
    token_accuracy,
    token_errors,
)
from img2latex_lib.render import LatexRenderer, MathtextRenderer, latex_available

# --- BLEU -----------------------------------------------------------------------------------


def test_bleu_hand_computed_corpus():
    # p1 = 9/10, p2 = 6/8, p3 = 4/6, p4 = 3/4; equal lengths, so no brevity penalty.
    refs = ["a b c d e f", "a b c d"]
    hyps = ["a b c d e f", "a b x d"]
    assert bleu4(refs, hyps) == pytest.approx((0.9 * 0.75 * (4 / 6) * 0.75) ** 0.25)


def test_bleu_clips_repeated_ngrams():
    # Clipped precisions 6/7, 5/6, 4/5, 3/4; the longer hypothesis has no brevity penalty.
    assert bleu4([["a", "a", "b", "c", "d", "e"]], [["a", "a", "a", "b", "c", "d", "e"]]) == (
        pytest.approx((3 / 7) ** 0.25)
    )


def test_bleu_brevity_penalty_is_over_the_corpus():
    # All n-grams match (p_n = 1); c = 9 hypothesis tokens against r = 10 reference tokens.
    refs = ["a b c d e f", "a b c d"]
    hyps = ["a b c d e f", "a b c"]
    assert bleu4(refs, hyps) == pytest.approx(math.exp(1 - 10 / 9))


def test_bleu_identical_is_one_and_no_4gram_match_is_zero():
    assert bleu4(["x ^ { 2 } + 1"], ["x^{2}+1"]) == pytest.approx(1.0)
    assert bleu4(["a a b a a"], ["a a a a a"]) == 0.0  # no matching trigram
    assert bleu4(["a b c d"], [""]) == 0.0
    assert bleu4([""], [""]) == 0.0


def test_bleu_matches_nltk_corpus_bleu():
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    # Hypotheses of 4+ tokens: for shorter ones nltk counts one 4-gram where the standard has none.
    rng = random.Random(0)
    refs = [[rng.choice("abcde") for _ in range(rng.randint(7, 30))] for _ in range(50)]
    hyps = [[t if rng.random() < 0.8 else rng.choice("abcdef") for t in ref] for ref in refs]
    hyps = [h[: rng.randint(len(h) - 3, len(h))] for h in hyps]
    expected = bleu_score.corpus_bleu([[r] for r in refs], hyps)
    assert bleu4(refs, hyps) == pytest.approx(expected, rel=1e-12)


def test_corpus_metrics_reject_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        bleu4(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no samples"):
        exact_match([], [])


# --- edit distance and edit score -----------------------------------------------------------


def _dp_distance(a: list[str], b: list[str]) -> int:
    """Textbook Levenshtein table, the oracle for the bit-parallel version."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a b c", "a b c", 0),
        ("a b c", "a x c", 1),  # one substitution
        ("a b c", "a c", 1),  # one deletion
        ("", "a b", 2),  # empty hypothesis
        ("", "", 0),
        (list("kitten"), list("sitting"), 3),
        (r"\frac { a } { b }", r"\frac{b}{a}", 2),
    ],
)
def test_edit_distance_hand_computed(a, b, expected):
    assert edit_distance(a, b) == expected
    assert edit_distance(b, a) == expected


@given(
    st.lists(st.sampled_from("abcd"), max_size=80), st.lists(st.sampled_from("abcde"), max_size=80)
)
def test_edit_distance_equals_dynamic_programming(a, b):
    assert edit_distance(a, b) == _dp_distance(a, b)


def test_edit_score_hand_computed():
    # distances 1 and 1 over max lengths 4 and 3.
    assert edit_score(["a b c d", "x y"], ["a b c e", "x y z"]) == pytest.approx(1 - 2 / 7)
    assert edit_score(["a b"], [""]) == 0.0
    assert edit_score(["x ^ { 2 }"], ["x^{2}"]) == 1.0


# --- exact match and token accuracy ---------------------------------------------------------


def test_exact_match_compares_tokens_not_spacing():
    assert exact_match(["x ^ { 2 }", "a"], ["x^{2}", "b"]) == 0.5
    assert exact_match([["a", "b"]], [["a", "b", "c"]]) == 0.0


def test_token_accuracy_is_position_wise_over_reference_tokens():
    # pair 1: a, c, d right (b wrong, extra e ignored); pair 2: x right, y missing.
    assert token_accuracy(["a b c d", "x y"], ["a c c d e", "x"]) == pytest.approx(4 / 6)
    assert token_accuracy(["a b"], [""]) == 0.0
    assert token_accuracy(["a b"], ["a b"]) == 1.0


# --- alignment and per-token errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("a b c", "a x c", [("a", "a"), ("b", "x"), ("c", "c")]),
        ("a b c", "a c", [("a", "a"), ("b", None), ("c", "c")]),
        ("a c", "a b c", [("a", "a"), (None, "b"), ("c", "c")]),
        ("", "x y", [(None, "x"), (None, "y")]),
        ("x", "", [("x", None)]),
        ("", "", []),
        (r"\frac { a } { b }", r"\frac{a}{b}c", [(t, t) for t in r"\frac { a } { b }".split()]
         + [(None, "c")]),
    ],
)
def test_align_hand_computed(ref, hyp, expected):
    assert align(ref, hyp) == expected


@given(
    st.lists(st.sampled_from("abcd"), max_size=40), st.lists(st.sampled_from("abcde"), max_size=40)
)
def test_align_is_a_minimum_edit_alignment(a, b):
    pairs = align(a, b)
    assert [r for r, _ in pairs if r is not None] == a
    assert [h for _, h in pairs if h is not None] == b
    assert (None, None) not in pairs
    assert sum(r != h for r, h in pairs) == edit_distance(a, b)


def test_token_errors_counts_by_token():
    errors = token_errors(["x ^ { 2 } + 1", "a + b"], ["x ^ { 3 } + 1", "a - b c"])
    assert errors.occurrences["+"] == 2 and errors.occurrences["{"] == 1
    assert errors.substitutions == {("2", "3"): 1, ("+", "-"): 1}
    assert errors.deletions == {}
    assert errors.insertions == {"c": 1}
    assert errors.missed == {"2": 1, "+": 1}
    # "+" missed once in 2, "2" once in 1; tokens seen fewer than min_count times are left out.
    assert errors.worst(min_count=1, top=2) == [("2", 1, 1), ("+", 2, 1)]
    assert errors.worst(min_count=2) == [("+", 2, 1)]


# --- bitmap comparison ----------------------------------------------------------------------


def _page(mask: np.ndarray, top: int = 3, left: int = 5) -> np.ndarray:
    """White 0-255 page with ``mask`` drawn in black at (top, left)."""
    page = np.full((mask.shape[0] + 10, mask.shape[1] + 12), 255, dtype=np.uint8)
    page[top : top + mask.shape[0], left : left + mask.shape[1]][mask] = 0
    return page


def _glyph() -> np.ndarray:
    mask = np.zeros((12, 20), dtype=bool)
    mask[0, :] = mask[:, 0] = mask[11, 5:15] = mask[3:9, 19] = True
    return mask


def test_ink_mask_crops_to_ink_and_binarises_at_128():
    page = _page(_glyph())
    page[0, 0] = 129  # light grey is not ink
    assert np.array_equal(ink_mask(page), _glyph())
    assert np.array_equal(ink_mask(Image.fromarray(page)), _glyph())
    assert ink_mask(np.full((5, 5), 255, dtype=np.uint8)).shape == (0, 0)
    with pytest.raises(ValueError, match="shape"):
        ink_mask(np.zeros((2, 3, 3), dtype=np.uint8))


def test_bitmaps_match_ignores_position_and_one_pixel_shifts():
    glyph = _glyph()
    assert bitmaps_match(_page(glyph, 1, 1), _page(glyph, 6, 9))
    moved = glyph.copy()
    moved[3:9, 19], moved[3:9, 18] = False, True  # one stroke one pixel to the left
    assert bitmaps_match(_page(glyph), _page(moved), tolerance=1)
    assert not bitmaps_match(_page(glyph), _page(moved))
    corner = np.zeros((13, 21), dtype=bool)
    corner[1:, 1:], corner[0, 0] = glyph, True  # one stray pixel moves the whole crop
    assert bitmaps_match(glyph, corner, tolerance=1)
    assert not bitmaps_match(glyph, corner)


def test_bitmaps_match_rejects_a_different_glyph():
    other = _glyph()
    other[5:8, 8:11] = True  # a blob in the middle of empty space
    assert not bitmaps_match(_page(_glyph()), _page(other), tolerance=1)
    assert bitmaps_match(_page(_glyph()), _page(other), max_mismatch=0.2)
    dot = _glyph()
    dot[6, 10] = True  # one stray pixel far from any ink
    assert not bitmaps_match(_glyph(), dot, tolerance=1)
    assert bitmaps_match(_glyph(), dot, max_mismatch=0.02)
    assert not bitmaps_match(_page(_glyph()), _page(np.ones((12, 30), dtype=bool)))


def test_bitmaps_match_blank_images():
    blank = np.full((4, 4), 255, dtype=np.uint8)
    assert bitmaps_match(blank, blank)
    assert not bitmaps_match(blank, _page(_glyph()))


# --- rendered metrics -----------------------------------------------------------------------


def _renderers() -> list:
    renderers = [pytest.param(MathtextRenderer(), id="mathtext")]
    if latex_available():
        renderers.append(pytest.param(LatexRenderer(), id="latex"))
    return renderers


@pytest.mark.parametrize("renderer", _renderers())
def test_image_match_sees_the_picture_not_the_spelling(renderer):
    assert image_match("x ^ { 2 }", "x ^ 2", renderer)
    assert image_match(["x", "^", "{", "2", "}"], "x^{2}", renderer)
    assert image_match(r"\frac { 1 } { 2 } \to y", r"\frac{1}{2}\rightarrow{y}", renderer)
    assert not image_match("x ^ { 2 }", "x ^ { 3 }", renderer)
    assert not image_match("a b", r"a \, b", renderer)
    assert not image_match("x ^ { 2 }", r"x ^ { 2", renderer)  # does not render


@pytest.mark.parametrize("renderer", _renderers())
def test_corpus_image_match_counts_render_failures(renderer):
    bad = r"\frac { a"
    refs = ["x ^ { 2 }", "a + b", bad, "y"]
    hyps = ["x ^ 2", bad, "a", "z"]
    report = corpus_image_match(refs, hyps, renderer)
    assert (report.total, report.ref_failed, report.hyp_failed) == (4, 1, 1)
    assert report.matched == 1 and report.rate == pytest.approx(1 / 3)
    assert report.compile_rate == pytest.approx(3 / 4)
    assert compile_rate(hyps, renderer) == pytest.approx(3 / 4)
    assert compiles("a + b", renderer) and not compiles(bad, renderer)
    assert not compiles(r"a + \undefinedcommand", renderer)


def test_evaluate_reports_all_figures():
    refs, hyps = ["x ^ { 2 } + 1", "a b"], ["x ^ 2 + 1", "a c"]
    figures = evaluate(refs, hyps)
    assert set(figures) == {"bleu4", "edit_score", "exact_match", "token_accuracy"}
    assert figures["edit_score"] == pytest.approx(1 - 3 / 9)  # distances 2 and 1, lengths 7, 2
    rendered = evaluate(refs, hyps, MathtextRenderer())
    assert rendered["image_match"] == 0.5 and rendered["compile_rate"] == 1.0
    assert rendered["ref_render_failures"] == 0.0


def test_format_table_is_markdown_with_one_row_per_system():
    table = format_table({"greedy": {"bleu4": 0.81234, "exact_match": 0.5}, "beam": {"bleu4": 1.0}})
    assert table.splitlines() == [
        "| system | bleu4 | exact_match |",
        "|---|---:|---:|",
        "| greedy | 0.8123 | 0.5 |",
        "| beam | 1 | - |",
    ]
