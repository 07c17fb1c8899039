"""Tests for img2latex_lib.selftrain: the render-and-compare verifier and pseudo-labelling,
with real pdflatex renders (and the real im2latex-100k images when they are linked in data/)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2latex_lib.compare import image_distance, render_phases
from img2latex_lib.datasets import load
from img2latex_lib.preprocess import load_image
from img2latex_lib.render import LatexRenderer, latex_available
from img2latex_lib.selftrain import (
    DECISIONS_FILE,
    Verifier,
    near_misses,
    pseudo_label,
    read_decisions,
    refilter,
)
from img2latex_lib.tokenizer import normalize

pytestmark = pytest.mark.skipif(not latex_available(), reason="pdflatex or gs not installed")

FORMULA = r"\frac { a + b } { c _ { 1 } } = \alpha ^ { 2 } - x _ { i }"
NEAR_MISSES = {
    "one wrong symbol": r"\frac { a + d } { c _ { 1 } } = \alpha ^ { 2 } - x _ { i }",
    "missing subscript": r"\frac { a + b } { c } = \alpha ^ { 2 } - x _ { i }",
    "wrong sign": r"\frac { a + b } { c _ { 1 } } = \alpha ^ { 2 } + x _ { i }",
    "extra space": r"\frac { a + b } { c _ { 1 } } = \alpha ^ { 2 } \, - x _ { i }",
}


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(renderer=LatexRenderer(template="im2latex", downsample=1, workers=1))


@pytest.fixture(scope="module")
def real_like() -> np.ndarray:
    """The formula as the real images were made, but half a pixel off the renderer's own phase
    (the verifier must not rely on the phase)."""
    fine = LatexRenderer(template="im2latex", downsample=1, workers=1).render(FORMULA)
    return render_phases(fine)[3]


def test_image_distance_basics(real_like):
    assert image_distance(real_like, real_like) == 0
    shifted = np.pad(real_like, ((3, 0), (0, 5)), constant_values=255)
    assert image_distance(real_like, shifted) == 0, "position on the canvas does not matter"
    blank = np.full_like(real_like, 255)
    assert image_distance(real_like, blank) == np.inf
    wider = np.pad(real_like, ((0, 0), (0, 6)), constant_values=255)
    wider[10:12, -3:] = 0  # ink 3 px beyond the formula's right edge
    assert image_distance(real_like, wider) == np.inf, "sizes differ by more than a pixel"


def test_verifier_accepts_the_formula_and_rejects_near_misses(verifier, real_like):
    spelled_differently = r"\frac{a+b}{c_1}=\alpha^2-x_i"
    verdict = verifier.verify(real_like, [spelled_differently])
    assert verdict.status == "accepted", verdict
    assert verdict.formula == normalize(spelled_differently) == normalize(FORMULA)
    for kind, near_miss in NEAR_MISSES.items():
        verdict = verifier.verify(real_like, [near_miss])
        assert verdict.status == "rejected", f"{kind}: {verdict}"
        assert verdict.distance > verifier.threshold, kind


def test_verifier_picks_the_matching_candidate_from_an_nbest_list(verifier, real_like):
    candidates = [NEAR_MISSES["one wrong symbol"], NEAR_MISSES["missing subscript"], FORMULA]
    verdict = verifier.verify(real_like, candidates)
    assert verdict.status == "accepted" and verdict.formula == FORMULA
    assert np.argmin(verdict.distances) == 2
    assert verdict.margin > verifier.margin


def test_verifier_margin_rejects_ambiguous_candidates(real_like):
    """With a threshold so loose that a near miss also 'matches', only the margin separates them:
    a rival that renders differently but about as well makes the image ambiguous, while an
    equivalent spelling (same picture) is no rival."""
    renderer = LatexRenderer(template="im2latex", downsample=1, workers=1)
    loose = Verifier(threshold=100.0, margin=100.0, renderer=renderer)
    verdict = loose.verify(real_like, [FORMULA, NEAR_MISSES["wrong sign"]])
    assert verdict.status == "rejected" and verdict.reason == "ambiguous"
    verdict = loose.verify(real_like, [FORMULA, r"\frac{a+b}{c_1}=\alpha^2-x_i"])
    assert verdict.status == "accepted" and verdict.margin == np.inf
    # a trailing \qquad moves the centred formula by a fraction of a pixel: not the same bitmap,
    # but the same picture, so no rival either
    shifted = renderer.render(FORMULA + r" \qquad")
    assert not np.array_equal(np.asarray(shifted), np.asarray(renderer.render(FORMULA)))
    verdict = loose.verify(real_like, [FORMULA, FORMULA + r" \qquad"])
    assert verdict.status == "accepted" and verdict.margin == np.inf


def test_verifier_reports_candidates_that_do_not_render(verifier, real_like):
    verdict = verifier.verify(real_like, [r"\frac { a", r"\input { /etc/passwd }"])
    assert verdict.status == "failed" and verdict.formula is None
    assert verdict.reason


def test_near_misses_are_one_mistake_away():
    misses = near_misses(FORMULA, seed=1)
    assert set(misses) == {"symbol", "script", "sign", "space"}
    tokens = FORMULA.split()
    for kind, miss in misses.items():
        changed = miss.split()
        assert changed != tokens, kind
        assert changed.count("{") == changed.count("}"), kind
    assert len(misses["symbol"].split()) == len(tokens)
    assert len(misses["script"].split()) < len(tokens)
    assert misses["space"].split().count("\\,") == 1
    assert near_misses("x") == {"symbol": near_misses("x")["symbol"]}
    assert near_misses(FORMULA, seed=1) == misses, "seeded"


def test_verifier_on_real_images(val_dir, verifier):
    """A real im2latex-100k image is reproduced by its gold formula, not by near misses of it.
    The default threshold trades recall for precision: the gold formula's render is within it
    for about half the images (101 of val ids 6975-7174)."""
    formulas = (val_dir / "formulas.norm.lst").read_text().split("\n")
    accepted, rejected, misses = 0, 0, 0
    for i in range(6975, 6985):  # the calibration slice, never trained on
        image = np.asarray(Image.open(val_dir / "images" / f"{i}.png").convert("L"))
        accepted += verifier.verify(image, [formulas[i]]).status == "accepted"
        for miss in near_misses(formulas[i], seed=i).values():
            misses += 1
            rejected += verifier.verify(image, [miss]).status != "accepted"
    assert accepted >= 5 and rejected == misses, (accepted, rejected, misses)


class ListedNbest:
    """Stands in for the model: a fixed n-best list per image (recognised by its pixels), so the
    test controls which images can be labelled; the real model runs in the CLI test."""

    def __init__(self, lists: dict[Path, list[str]]):
        self.lists = {_key(load_image(path)): candidates for path, candidates in lists.items()}

    def nbest_lists(self, images, beam_size=5):
        return [[(c, 0.0) for c in self.lists[_key(image)]] for image in images]


def _key(image: Image.Image) -> bytes:
    return np.asarray(image).tobytes()


def _write_images(folder: Path, formulas: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    renderer = LatexRenderer(template="im2latex", workers=1)
    paths = []
    for k, result in enumerate(renderer.render_batch(formulas)):
        path = folder / f"{k}.png"
        result.image.save(path)
        paths.append(path)
    return paths


def test_pseudo_label_writes_a_dataset_and_resumes(tmp_path):
    formulas = [r"a ^ { 2 } + b ^ { 2 }", r"\sqrt { x + 1 }", r"\sum _ { i = 1 } ^ { n } i",
                r"\frac { 1 } { 2 }", r"e ^ { i \pi }"]
    paths = _write_images(tmp_path / "unlabeled", formulas)
    (tmp_path / "unlabeled" / "broken.png").write_bytes(b"not an image")
    paths.append(tmp_path / "unlabeled" / "broken.png")
    Image.new("L", (80, 20), 255).save(tmp_path / "unlabeled" / "blank.png")
    paths.append(tmp_path / "unlabeled" / "blank.png")
    candidates = [
        ["a ^ { 3 } + b ^ { 2 }", "a^2+b^2"],  # the right one second, in another spelling
        [r"\sqrt { x + 7 }"],  # only a near miss: rejected
        [r"\sum _ { i = 1 } ^ { n } i"],
        [r"\frac { 1 } { 3 }"],
        [r"e ^ { i \pi }"],
    ]
    producer = ListedNbest(dict(zip(paths[:5], candidates, strict=True)))
    verifier = Verifier(renderer=LatexRenderer(template="im2latex", downsample=1, workers=1))
    out = tmp_path / "round1"

    first = pseudo_label(producer, paths[:3], out, verifier, batch_size=2, progress=False)
    assert first.counts == {"accepted": 2, "rejected": 1}
    second = pseudo_label(producer, paths, out, verifier, batch_size=2, progress=False)
    assert second.skipped == 3
    assert second.counts == {"accepted": 1, "rejected": 1, "failed": 2}

    decisions = read_decisions(out)
    assert [decisions[p.name]["status"] for p in paths] == [
        "accepted", "rejected", "accepted", "rejected", "accepted", "failed", "failed"]
    assert "broken.png" in decisions["broken.png"]["reason"]
    assert "blank.png: blank image" in decisions["blank.png"]["reason"]
    with (out / DECISIONS_FILE).open() as handle:
        assert len(list(csv.DictReader(handle, delimiter="\t"))) == 7, "each image decided once"

    dataset = load(out)
    assert {s.image.name: s.formula for s in dataset.samples} == {
        "0.png": normalize("a^2+b^2"), "2.png": normalize(formulas[2]),
        "4.png": normalize(formulas[4])}
    for sample in dataset.samples:
        source = tmp_path / "unlabeled" / sample.image.name
        assert sample.image.read_bytes() == source.read_bytes()


def test_refilter_keeps_the_labels_that_pass_stricter_settings(tmp_path):
    source = tmp_path / "round1"
    (source / "images").mkdir(parents=True)
    rows = [("0.png", "accepted", "0.3", "inf", "a + b"),
            ("1.png", "accepted", "1.1", "2.0", "c + d"),  # too far for 0.6
            ("2.png", "accepted", "0.5", "0.05", "e + f"),  # too close a rival
            ("3.png", "rejected", "0.2", "0.0", "g + h"),
            ("4.png", "accepted", "0.6", "0.1", "x ^ { 2 }")]
    with (source / DECISIONS_FILE).open("w") as handle:
        handle.write("image\tstatus\tdistance\tmargin\tround\tformula\treason\n")
        for name, status, distance, margin, formula in rows:
            handle.write(f"{name}\t{status}\t{distance}\t{margin}\t1\t{formula}\t\n")
            Image.new("L", (30, 10), 255 if status == "rejected" else 0).save(
                source / "images" / name)
    out = tmp_path / "strict"
    assert refilter(source, out, threshold=0.6, margin=0.1) == 2
    assert {s.image.name: s.formula for s in load(out).samples} == {
        "0.png": "a + b", "4.png": "x ^ { 2 }"}
    assert set(read_decisions(out)) == {"0.png", "4.png"}
    with pytest.raises(FileNotFoundError, match="not a pseudo-label folder"):
        refilter(tmp_path, tmp_path / "nothing")
