"""Random formula generator whose weights are fitted to real im2latex-100k formulas.

A small grammar writes formulas the way the normalized im2latex-100k formulas look: sums and
relations of terms, fractions, sub- and superscripts, roots, big operators with limits,
``\\left ... \\right`` pairs, arrays, accents, fonts, function names, words, spacing and
punctuation. Every choice follows statistics measured on real formulas (:func:`fit_statistics`):

- how long formulas are, and fractions, scripts, parentheses, array cells...; a formula draws its
  length first and every part gets the room that is left (so lengths match the real ones);
- which kind of item (letter, fraction, root, ...) starts, and which scripts follow an item, in
  each context (top level, subscript, superscript, argument, array cell) with as many tokens
  left in the group as there (so ``\\frac { 1 } { m ^ { 2 } }`` fills its room like real ones);
- which tokens fill each role in each context, and how often a formula repeats its letters;
- at top level, weights fitted by simulation so that generated formulas have as many fractions,
  scripts, relations... as real ones, and a per-formula spread, fitted to the share of formulas
  that have each structure (real structures cluster: one fraction often comes with several).

Output is normalized, space-separated tokens (``normalize(f) == f``) that compile with pdflatex in
the im2latex template (article, no amsmath): function names are written ``\\mathrm { s i n }``
(im2latex writes ``\\operatorname``, which needs amsmath) and matrices as ``array``.

Fit the statistics shipped with the package (lines before :data:`DEV_TEST_START` only)::

    python -m img2latex_lib.synth fit data/im2latex100k_val/formulas.norm.lst

The package, one job a module: :mod:`.grammar` (token tables, kinds, contexts), :mod:`.width`
(the typeset width estimate), :mod:`.profile` (counting the structure of formulas),
:mod:`.stats` (the shipped statistics file), :mod:`.generator` (drawing formulas),
:mod:`.fit` (fitting the statistics by simulation) and :mod:`.cli` (the command).
"""

from .cli import main
from .fit import fit_statistics
from .generator import FormulaGenerator, generate_formulas
from .grammar import CATEGORIES, CONTEXTS
from .stats import DEV_TEST_START, STATS_FILE, STATS_VERSION, default_statistics
from .width import MAX_WIDTH_PT, estimate_width

__all__ = [
    "CATEGORIES",
    "CONTEXTS",
    "DEV_TEST_START",
    "MAX_WIDTH_PT",
    "STATS_FILE",
    "STATS_VERSION",
    "FormulaGenerator",
    "default_statistics",
    "estimate_width",
    "fit_statistics",
    "generate_formulas",
    "main",
]
