"""Tests for img2latex_lib.rerank: choosing among a beam's candidates by rendering them, with real
pdflatex renders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from img2latex_lib.cli import main
from img2latex_lib.compare import rescaled_distance
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.render import LatexRenderer, latex_available
from img2latex_lib.rerank import RenderReranker, chosen_index, pooled, trusted_choices
from img2latex_lib.selftrain import Verifier
from img2latex_lib.styles import STYLES, missing, style_renderer
from tests.test_cli import checkpoint, images  # noqa: F401  (fixtures)

needs_latex = pytest.mark.skipif(not latex_available(), reason="pdflatex or gs not installed")

FORMULA = r"\frac { a + b } { c _ { 1 } } = \alpha ^ { 2 } - x _ { i }"
ALIKE = r"\frac { a + b } { c _ 1 } = \alpha ^ 2 - x _ i"  # another spelling, the same picture
WRONG = r"\frac { a + d } { c _ { 1 } } = \alpha ^ { 2 } - x _ { i }"  # one symbol changed


@pytest.mark.parametrize(("distances", "tolerance", "index"), [
    ([math.inf, math.inf], 0.5, 0),  # nothing matches: the beam's first
    ([], 0.5, 0),
    ([2.0, 0.1, 0.3], 0.5, 1),  # the first is much worse: the best match
    ([0.4, 0.1, 0.0], 0.5, 0),  # the first matches about as well: the model's choice stands
    ([0.4, 0.1, 0.0], 0.0, 2),
    ([math.inf, 0.9, 0.2], 1.0, 1),
])
def test_chosen_index_prefers_the_best_scored_among_close_matches(distances, tolerance, index):
    assert chosen_index(distances, tolerance) == index


def test_trusted_choices_keep_the_first_candidate_where_no_style_matched():
    lists = [["a", "b"], ["c", "d"], []]
    distances = [[3.0, 0.1], [3.0, 0.1], []]
    assert trusted_choices(lists, distances, ["times", None, None]) == ["b", "c", ""]


def test_pooled_keeps_each_lists_order_and_each_candidate_once():
    assert pooled(["a", "b", "c"], ["b", "d", "a", "e"]) == ["a", "b", "c", "d", "e"]
    assert pooled([], ["x"], ["x", "y"]) == ["x", "y"]
    assert pooled() == []


@pytest.fixture(scope="module")
def reranker() -> RenderReranker:
    return RenderReranker(verifier=Verifier(
        renderer=LatexRenderer(template="im2latex", downsample=1, workers=1)))


@pytest.fixture(scope="module")
def typeset() -> Image.Image:
    """The formula typeset the way the im2latex-100k images were."""
    return LatexRenderer(template="im2latex", workers=1).render(FORMULA)


@needs_latex
def test_the_candidate_that_reproduces_the_image_wins(reranker, typeset):
    assert reranker.choose([typeset], [[WRONG, FORMULA]]) == [FORMULA]
    assert reranker.choose([typeset], [[FORMULA, WRONG]]) == [FORMULA]
    distances = reranker.distances([typeset], [[WRONG, FORMULA, ALIKE]])[0]
    assert distances[1] < 0.5 and distances[2] < 0.5 < distances[0]
    # spellings that render alike: the model's order decides
    assert reranker.choose([typeset], [[ALIKE, FORMULA]]) == [ALIKE]
    assert reranker.choose([typeset, typeset], [[], [WRONG]]) == ["", WRONG]


@needs_latex
@pytest.mark.parametrize("dpi", [100, 300, 600])  # 0.5x, 1.5x and 3x the im2latex size
def test_an_image_at_another_zoom_is_compared_rescaled(reranker, dpi):
    zoomed = LatexRenderer(template="im2latex", workers=1, dpi=dpi).render(FORMULA)
    wrong, right = reranker.distances([zoomed], [[WRONG, FORMULA]])[0]
    assert right + 1 < wrong < math.inf
    assert reranker.choose([zoomed], [[WRONG, FORMULA]]) == [FORMULA]
    assert reranker.choose([zoomed], [[FORMULA, WRONG]]) == [FORMULA]


@needs_latex
def test_an_image_no_candidate_matches_keeps_the_beams_first_candidate(reranker):
    other = LatexRenderer(template="im2latex", workers=1, dpi=600).render(r"x + y")
    assert reranker.distances([other], [[WRONG, FORMULA]]) == [[math.inf, math.inf]]
    assert reranker.choose([other], [[WRONG, FORMULA]]) == [WRONG]


@needs_latex
def test_rescaling_is_only_for_another_zoom(reranker, typeset):
    fine = np.asarray(reranker.verifier.renderer.render(FORMULA))
    assert rescaled_distance(np.asarray(typeset), fine) == math.inf  # same size: no rescaling
    assert rescaled_distance(np.full((40, 200), 255, np.uint8), fine) == math.inf  # blank


@needs_latex
def test_producer_reranks_its_own_beam(checkpoint, images):  # noqa: F811
    producer = LatexProducer(checkpoint)
    paths = [str(p) for p in images]
    nbest = producer.nbest_lists(paths, 3)
    chosen = producer.predict(paths, beam_size=3, rerank=True)
    assert [c in [latex for latex, _ in n] for c, n in zip(chosen, nbest, strict=True)] == [
        True] * len(paths)
    # boxes that no formula of this vocabulary reproduces: the beam's first candidates stay
    assert chosen == producer.predict(paths, beam_size=3)
    with pytest.raises(ValueError, match="beam size of 2 or more, got 1"):
        producer.predict(paths, rerank=True)


@needs_latex
def test_cli_predict_rerank(checkpoint, images, capsys):  # noqa: F811
    args = ["predict", *map(str, images), "--checkpoint", str(checkpoint), "--rerank"]
    assert main([*args, "--beam", "3"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [row[0] for row in rows] == [str(p) for p in images]
    assert main(args) == 1
    assert "needs a beam size of 2 or more" in capsys.readouterr().err


@needs_latex
def test_a_companion_models_candidate_can_win_the_render_check(checkpoint, typeset):  # noqa: F811
    producer = LatexProducer(checkpoint, companions=[checkpoint])
    own = [latex for latex, _ in producer.nbest(typeset, 3)]
    assert producer.candidate_lists([typeset], 3) == [own]  # the same model adds nothing new
    # a companion that reads this formula (its model stands in for a better-trained one)
    companion = producer.companions[0]
    companion.nbest_lists = lambda items, beam_size, batch_size: [
        [(WRONG, -0.1), (FORMULA, -0.2)] for _ in items]
    assert producer.candidate_lists([typeset], 3) == [pooled(own, [WRONG, FORMULA])]
    assert FORMULA not in own  # the tiny test model cannot write it itself …
    assert producer.predict(typeset, beam_size=3, rerank=True) == FORMULA  # … the check finds it


@needs_latex
def test_cli_companion_needs_rerank(checkpoint, images, capsys):  # noqa: F811
    args = ["predict", str(images[0]), "--checkpoint", str(checkpoint), "--beam", "3",
            "--companion", str(checkpoint)]
    assert main(args) == 1
    assert "give --rerank too" in capsys.readouterr().err
    assert main([*args, "--rerank"]) == 0
    assert capsys.readouterr().out.strip()


@needs_latex
@pytest.mark.parametrize("face", ["times", "palatino"])
def test_an_image_in_another_face_is_compared_in_the_style_that_matches_it(face, typeset):
    image = style_renderer(face).render(FORMULA)
    im2latex_only = RenderReranker()
    assert im2latex_only.distances([image], [[WRONG, FORMULA]])[0][0] == math.inf  # no match
    styled = RenderReranker(styles=("im2latex", "times", "palatino"))
    wrong, right = styled.distances([image], [[WRONG, FORMULA]])[0]
    assert right + 1 < wrong
    assert styled.matched_styles == [face]
    assert styled.choose([image, typeset], [[WRONG, FORMULA], [WRONG, FORMULA]]) == [FORMULA] * 2
    assert styled.matched_styles == [face, "im2latex"]  # each image in its own style


@needs_latex
def test_an_image_in_a_face_no_probe_style_has_keeps_the_beams_first():
    image = style_renderer("sans").render(FORMULA)  # sans-serif: neither Computer Modern nor Times
    loose = RenderReranker(styles=("im2latex", "times"), match_limit=math.inf,
                           rescaled_match_limit=math.inf)
    assert min(loose.distances([image], [[WRONG, FORMULA]])[0]) > 4.0
    assert loose.matched_styles != [None]
    strict = RenderReranker(styles=("im2latex", "times"))
    assert strict.choose([image], [[WRONG, FORMULA]]) == [WRONG]  # the model's choice stands
    assert strict.matched_styles == [None]
    own_face = RenderReranker(styles=("im2latex", "sans"))
    assert own_face.choose([image], [[WRONG, FORMULA]]) == [FORMULA]
    assert own_face.matched_styles == ["sans"]


@needs_latex
def test_styles_that_cannot_render_here_are_left_out_of_the_check():
    absent = next((name for name in STYLES if missing(name) is not None), None)
    if absent is None:
        pytest.skip("every style can render here")
    assert [s.name for s in RenderReranker(styles=(absent, "times")).check_styles()] == ["times"]
    with pytest.raises(ValueError, match="none of the render check's styles can render here"):
        RenderReranker(styles=(absent,)).check_styles()
    with pytest.raises(ValueError, match="at least one style"):
        RenderReranker(styles=())


@needs_latex
def test_cli_rerank_styles(checkpoint, images, capsys):  # noqa: F811
    args = ["predict", str(images[0]), "--checkpoint", str(checkpoint), "--beam", "3"]
    assert main([*args, "--rerank-styles", "times"]) == 1
    assert "give --rerank too" in capsys.readouterr().err
    assert main([*args, "--rerank", "--rerank-styles", "nosuchface"]) == 1
    err = capsys.readouterr().err.strip()
    assert "unknown style 'nosuchface'" in err and len(err.splitlines()) == 1
    assert main([*args, "--rerank", "--rerank-styles", "im2latex,times"]) == 0
    assert capsys.readouterr().out.strip()
