"""Evaluation metrics: BLEU-4, edit distance, exact match, token accuracy, image match, and
token alignments with per-token error counts for error analysis.

Formulas may be given as LaTeX strings (tokenized with :func:`img2latex_lib.tokenizer.tokenize`,
so ``"x^2"`` and ``"x ^ 2"`` are the same) or as token lists. Corpus metrics take parallel
sequences of references (gold) and hypotheses (predictions) and return a share in [0, 1].

Image match follows im2markup: render the gold and the predicted formula with the same renderer,
binarise, crop to the ink and compare the bitmaps, so two spellings of one picture count as equal.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from img2latex_lib.compare import bitmaps_match
from img2latex_lib.tokenizer import tokenize

if TYPE_CHECKING:
    from img2latex_lib.render import RenderResult

Formula = str | Sequence[str]


class BatchRenderer(Protocol):
    """Anything that renders many formulas at once (``LatexRenderer``, ``MathtextRenderer``)."""

    def render_batch(self, formulas: Sequence[str]) -> list[RenderResult]: ...


# --- token metrics --------------------------------------------------------------------------


def as_tokens(formula: Formula) -> list[str]:
    """Tokens of a formula given as LaTeX text or as a token list."""
    return tokenize(formula) if isinstance(formula, str) else list(formula)


def _check_parallel(references: Sequence[Formula], hypotheses: Sequence[Formula]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(
            f"got {len(references)} references but {len(hypotheses)} hypotheses; "
            "pass one hypothesis per reference"
        )
    if not references:
        raise ValueError("no samples to evaluate: references and hypotheses are empty")


def _token_pairs(
    references: Sequence[Formula], hypotheses: Sequence[Formula]
) -> list[tuple[list[str], list[str]]]:
    _check_parallel(references, hypotheses)
    return [(as_tokens(r), as_tokens(h)) for r, h in zip(references, hypotheses, strict=True)]


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu4(references: Sequence[Formula], hypotheses: Sequence[Formula]) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002) with one reference per hypothesis.

    Clipped n-gram counts (n = 1..4) are summed over the corpus, combined by a geometric mean with
    uniform weights, and multiplied by the corpus brevity penalty ``exp(1 - r / c)`` when the total
    hypothesis length ``c`` is below the total reference length ``r``. No smoothing: a corpus
    without any matching n-gram of some order (including an all-empty corpus) scores 0.
    """
    pairs = _token_pairs(references, hypotheses)
    matches, totals = [0] * 4, [0] * 4
    for ref, hyp in pairs:
        for n in range(1, 5):
            hyp_ngrams = _ngrams(hyp, n)
            matches[n - 1] += sum((hyp_ngrams & _ngrams(ref, n)).values())
            totals[n - 1] += sum(hyp_ngrams.values())
    if min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / 4
    hyp_len, ref_len = totals[0], sum(len(ref) for ref, _ in pairs)
    brevity = 0.0 if hyp_len >= ref_len else 1.0 - ref_len / hyp_len
    return math.exp(log_precision + brevity)


def edit_distance(a: Formula, b: Formula) -> int:
    """Levenshtein distance between two token sequences (insert, delete, substitute cost 1).

    Uses Hyyrö's bit-parallel algorithm: one pass over ``b`` with ``len(a)``-bit integers.
    """
    a, b = as_tokens(a), as_tokens(b)
    if not a or not b:
        return len(a) + len(b)
    match_bits: dict[str, int] = {}
    for i, token in enumerate(a):
        match_bits[token] = match_bits.get(token, 0) | (1 << i)
    mask, last = (1 << len(a)) - 1, 1 << (len(a) - 1)
    plus, minus, distance = mask, 0, len(a)  # vertical +1 / -1 deltas of the DP column
    for token in b:
        x = match_bits.get(token, 0) | minus
        diag = (((x & plus) + plus) ^ plus) | x
        h_plus = minus | ~(diag | plus)
        h_minus = diag & plus
        if h_plus & last:
            distance += 1
        elif h_minus & last:
            distance -= 1
        h_plus = (h_plus << 1) | 1
        h_minus <<= 1
        plus = (h_minus | ~(diag | h_plus)) & mask
        minus = h_plus & diag & mask
    return distance


def edit_score(references: Sequence[Formula], hypotheses: Sequence[Formula]) -> float:
    """im2markup's edit-distance accuracy: ``1 - sum(dist) / sum(max(len(ref), len(hyp)))``.

    Distances and lengths are in tokens and summed over the corpus before dividing, so long
    formulas weigh more. 1 means every hypothesis equals its reference; an all-empty corpus is 1.
    """
    pairs = _token_pairs(references, hypotheses)
    total = sum(max(len(ref), len(hyp)) for ref, hyp in pairs)
    if total == 0:
        return 1.0
    return 1.0 - sum(edit_distance(ref, hyp) for ref, hyp in pairs) / total


def exact_match(references: Sequence[Formula], hypotheses: Sequence[Formula]) -> float:
    """Share of hypotheses whose token sequence equals the reference's."""
    pairs = _token_pairs(references, hypotheses)
    return sum(ref == hyp for ref, hyp in pairs) / len(pairs)


def token_accuracy(references: Sequence[Formula], hypotheses: Sequence[Formula]) -> float:
    """Position-wise accuracy over reference tokens.

    ``sum_i #{j < len(ref_i) : j < len(hyp_i) and hyp_i[j] == ref_i[j]} / sum_i len(ref_i)``:
    reference token j counts as right when the hypothesis has the same token at position j. A
    missing token counts as wrong; hypothesis tokens past the reference's end are not counted.
    With no reference tokens at all there is nothing to get wrong and the result is 1.
    """
    pairs = _token_pairs(references, hypotheses)
    total = sum(len(ref) for ref, _ in pairs)
    if total == 0:
        return 1.0
    return sum(r == h for ref, hyp in pairs for r, h in zip(ref, hyp, strict=False)) / total


# --- error analysis -------------------------------------------------------------------------


def align(reference: Formula, hypothesis: Formula) -> list[tuple[str | None, str | None]]:
    """A minimum-edit alignment of two token sequences, as ``(reference, hypothesis)`` pairs.

    Equal pairs are matches, unequal ones substitutions; ``(token, None)`` is a reference token
    the hypothesis left out, ``(None, token)`` one it added. The number of non-matching pairs is
    :func:`edit_distance`. Where several alignments are equally short, the one returned is fixed:
    tracing back from the ends, a match or substitution is taken first, then a deletion.
    """
    ref, hyp = as_tokens(reference), as_tokens(hypothesis)
    table = [list(range(len(hyp) + 1))]  # table[i][j]: distance of ref[:i] and hyp[:j]
    for i, r in enumerate(ref, 1):
        above, row = table[-1], [i]
        for j, h in enumerate(hyp, 1):
            row.append(min(above[j - 1] + (r != h), above[j] + 1, row[j - 1] + 1))
        table.append(row)
    pairs: list[tuple[str | None, str | None]] = []
    i, j = len(ref), len(hyp)
    while i or j:
        if i and j and table[i][j] == table[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            i, j = i - 1, j - 1
            pairs.append((ref[i], hyp[j]))
        elif i and table[i][j] == table[i - 1][j] + 1:
            i -= 1
            pairs.append((ref[i], None))
        else:
            j -= 1
            pairs.append((None, hyp[j]))
    return pairs[::-1]


@dataclass
class TokenErrors:
    """Error counts of a corpus by token, from the alignments of :func:`align`.

    ``occurrences`` counts reference tokens; ``deletions`` the reference tokens a hypothesis left
    out; ``substitutions`` ``(reference token, hypothesis token)`` pairs; ``insertions`` the
    hypothesis tokens that stand for nothing in the reference.
    """

    occurrences: Counter[str] = field(default_factory=Counter)
    deletions: Counter[str] = field(default_factory=Counter)
    substitutions: Counter[tuple[str, str]] = field(default_factory=Counter)
    insertions: Counter[str] = field(default_factory=Counter)

    @property
    def missed(self) -> Counter[str]:
        """Reference tokens not reproduced (deleted or substituted), by token."""
        missed = Counter(self.deletions)
        for (ref, _), count in self.substitutions.items():
            missed[ref] += count
        return missed

    def worst(self, min_count: int = 5, top: int = 10) -> list[tuple[str, int, int]]:
        """``(token, occurrences, missed)`` of the tokens seen at least ``min_count`` times, the
        largest share missed first (ties: the more frequent first)."""
        missed = self.missed
        rows = [(t, n, missed[t]) for t, n in self.occurrences.items() if n >= min_count]
        rows.sort(key=lambda row: (-row[2] / row[1], -row[1], row[0]))
        return rows[:top]


def token_errors(references: Sequence[Formula], hypotheses: Sequence[Formula]) -> TokenErrors:
    """Count, over a corpus, which reference tokens are missed and what is written instead."""
    errors = TokenErrors()
    for ref, hyp in _token_pairs(references, hypotheses):
        errors.occurrences.update(ref)
        for r, h in align(ref, hyp):
            if h is None:
                errors.deletions[r] += 1
            elif r is None:
                errors.insertions[h] += 1
            elif r != h:
                errors.substitutions[r, h] += 1
    return errors


# --- rendered metrics -----------------------------------------------------------------------


def _latex(formula: Formula) -> str:
    return formula if isinstance(formula, str) else " ".join(formula)


def _compiled(result: RenderResult) -> bool:
    """Rendered, and without LaTeX errors that TeX recovered from (``RenderResult.warnings``)."""
    return result.image is not None and not result.warnings


def _render_all(formulas: Sequence[Formula], renderer: BatchRenderer) -> dict[str, RenderResult]:
    """Render each distinct formula once; results keyed by the LaTeX text."""
    unique = list(dict.fromkeys(_latex(f) for f in formulas))
    return dict(zip(unique, renderer.render_batch(unique), strict=True))


@dataclass(frozen=True)
class ImageMatchReport:
    """Counts behind the image-match rate of a corpus.

    ``ref_failed`` references did not render and their pairs are skipped; ``hyp_failed`` counts the
    hypotheses (of all ``total`` pairs) that did not render, which count as mismatches;
    ``hyp_compiled`` those that rendered without any LaTeX error.
    """

    total: int
    ref_failed: int
    hyp_failed: int
    hyp_compiled: int
    matched: int

    @property
    def compared(self) -> int:
        """Pairs whose reference rendered."""
        return self.total - self.ref_failed

    @property
    def rate(self) -> float:
        """Share of compared pairs whose renders match."""
        return self.matched / self.compared if self.compared else 0.0

    @property
    def compile_rate(self) -> float:
        """Share of all hypotheses that rendered without LaTeX errors."""
        return self.hyp_compiled / self.total


def corpus_image_match(
    references: Sequence[Formula],
    hypotheses: Sequence[Formula],
    renderer: BatchRenderer,
    tolerance: int = 0,
) -> ImageMatchReport:
    """Render every pair with ``renderer`` and compare the bitmaps (see :func:`bitmaps_match`)."""
    _check_parallel(references, hypotheses)
    renders = _render_all([*references, *hypotheses], renderer)
    ref_failed = hyp_failed = hyp_compiled = matched = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_image, hyp_render = renders[_latex(ref)].image, renders[_latex(hyp)]
        hyp_image = hyp_render.image
        hyp_failed += hyp_image is None
        hyp_compiled += _compiled(hyp_render)
        if ref_image is None:
            ref_failed += 1
        elif hyp_image is not None:
            matched += bitmaps_match(ref_image, hyp_image, tolerance)
    return ImageMatchReport(len(references), ref_failed, hyp_failed, hyp_compiled, matched)


def image_match(
    reference: Formula, hypothesis: Formula, renderer: BatchRenderer, tolerance: int = 0
) -> bool:
    """Whether two formulas render to the same picture; False when either fails to render.

    A formula that TeX typesets despite errors (the tolerant im2latex template) is compared as
    rendered, as im2markup does with ``pdflatex -interaction=nonstopmode``.
    """
    report = corpus_image_match([reference], [hypothesis], renderer, tolerance)
    return report.matched == 1


def compile_rate(formulas: Sequence[Formula], renderer: BatchRenderer) -> float:
    """Share of formulas that ``renderer`` renders without any LaTeX error (pdflatex compiles them).

    A formula that the tolerant im2latex template typesets despite errors does not count.
    """
    if not formulas:
        raise ValueError("no formulas to compile")
    renders = _render_all(formulas, renderer)
    return sum(_compiled(renders[_latex(f)]) for f in formulas) / len(formulas)


def compiles(formula: Formula, renderer: BatchRenderer) -> bool:
    """Whether ``renderer`` renders the formula without any LaTeX error."""
    return compile_rate([formula], renderer) == 1.0


def evaluate(
    references: Sequence[Formula],
    hypotheses: Sequence[Formula],
    renderer: BatchRenderer | None = None,
) -> dict[str, float]:
    """All metrics of a corpus in one dict.

    Always: ``bleu4``, ``edit_score``, ``exact_match``, ``token_accuracy``. With a renderer also
    ``image_match``, ``compile_rate`` and ``ref_render_failures`` (a count of references that did
    not render and were left out of the image match).
    """
    figures = {
        "bleu4": bleu4(references, hypotheses),
        "edit_score": edit_score(references, hypotheses),
        "exact_match": exact_match(references, hypotheses),
        "token_accuracy": token_accuracy(references, hypotheses),
    }
    if renderer is not None:
        report = corpus_image_match(references, hypotheses, renderer)
        figures |= {
            "image_match": report.rate,
            "compile_rate": report.compile_rate,
            "ref_render_failures": float(report.ref_failed),
        }
    return figures


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per system (the keys), one column per metric (first-seen order).

    Values print with 4 significant digits; a metric a system lacks prints as ``-``.
    """
    columns = list(dict.fromkeys(metric for figures in rows.values() for metric in figures))
    lines = [
        "| system | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, figures in rows.items():
        cells = [f"{figures[c]:.4g}" if c in figures else "-" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
