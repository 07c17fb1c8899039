"""Fitting the generator's statistics to real formulas: count them, then adjust the top-level
weights, spreads, reuse and length factors by simulation until generated formulas match."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from ..tokenizer import MAX_LEN
from .generator import FormulaGenerator
from .grammar import CONNECTORS, CONTEXTS, KIND_COST, REUSED, SCRIPTS
from .profile import Profile, counts_json, profile_formulas
from .stats import LENGTH_BIN, STATS_VERSION

#: Fitted top-level weights stay within [1/MAX_FACTOR, MAX_FACTOR] of the counted distributions.
MAX_FACTOR = 20.0
#: What the fitted top-level weights and per-formula spreads act on.
KNOBS = (*KIND_COST, *CONNECTORS, *SCRIPTS)


def fit_statistics(
    formulas: Iterable[str], rounds: int = 12, samples: int = 2000, seed: int = 0
) -> dict:
    """Statistics of real formulas and generator weights fitted to reproduce them.

    The formulas are normalized first. Token, length, kind and script distributions are counted
    directly. Then, for ``rounds`` rounds, ``samples`` formulas are generated and measured:
    each top-level weight is scaled by (real / generated rate of its structure), the spread of
    the per-formula gamma factor by the share of formulas that have the structure, and the
    probability of reusing a letter by the share of repeated letters.
    """
    profile = profile_formulas(formulas)
    if profile.formulas == 0:
        raise ValueError("no formulas to fit statistics on")
    wraps = {
        kind: n / max(sum(profile.events[f"{kind}@{c}"] for c in CONTEXTS), 1)
        for kind, n in sorted(profile.wrapped.items())
    }
    stats = {
        "version": STATS_VERSION,
        "formulas": profile.formulas,
        "tokens": {key: counts_json(c) for key, c in sorted(profile.tokens.items())},
        "lengths": {key: counts_json(c) for key, c in sorted(profile.lengths.items())},
        "choices": {key: counts_json(c, 300) for key, c in sorted(profile.choices.items())},
        "wrap": wraps,
        "targets": profile.event_rates(),
        "presence": profile.presence(),
        "repeats": profile.repeats(),
        "script_patterns": profile.script_patterns(),
        "kinds": {key: counts_json(c) for key, c in sorted(profile.starts.items())},
    }
    stats["reuse"] = {cat: 0.3 for cat in REUSED}
    stats["dispersion"] = {k: 1.0 for k in KNOBS if k in stats["presence"]}
    stats["weights"] = {k: 1.0 for k in KNOBS}
    stats["length_factors"] = {str(b): 1.0 for b in range(MAX_LEN // LENGTH_BIN + 1)}
    for step in range(rounds):
        generator = FormulaGenerator(seed + step, stats)
        generated = profile_formulas(generator.generate() for _ in range(samples))
        _rescale(stats, generated, damping=0.8 if step < rounds // 2 else 0.5)
    return stats


def _rescale(stats: dict, generated: Profile, damping: float) -> None:
    """Scale each weight by (real / generated rate) ** damping, each spread by presence."""
    targets, rates = stats["targets"], generated.event_rates()
    presence, repeats = generated.presence(), generated.repeats()
    for cat, p in stats["reuse"].items():
        ratio = (stats["repeats"][cat] + 1e-3) / (repeats[cat] + 1e-3)
        stats["reuse"][cat] = min(max(p * ratio**damping, 0.0), 0.95)
    for knob, shape in stats["dispersion"].items():
        ratio = stats["presence"][knob] / max(presence.get(knob, 0), 1e-3)
        stats["dispersion"][knob] = min(max(shape * ratio ** (2 * damping), 0.02), 100.0)
    real = _length_shares(stats["lengths"]["formula"])
    made = _length_shares(generated.lengths["formula"])
    for b, factor in stats["length_factors"].items():  # too wide formulas are drawn again
        ratio = (real.get(b, 0) + 1e-3) / (made.get(b, 0) + 1e-3)
        stats["length_factors"][b] = min(max(factor * ratio**damping, 1 / MAX_FACTOR), MAX_FACTOR)
    weights = stats["weights"]
    for knob, weight in weights.items():
        ratio = (targets.get(f"{knob}@main", 0) + 1e-3) / (rates.get(f"{knob}@main", 0) + 1e-3)
        weights[knob] = min(max(weight * ratio**damping, 1 / MAX_FACTOR), MAX_FACTOR)
    # only ratios between kinds matter: keep their geometric mean at 1
    mean = math.exp(sum(math.log(weights[k]) for k in KIND_COST) / len(KIND_COST))
    for kind in KIND_COST:
        weights[kind] /= mean


def _length_shares(counts: dict) -> dict[str, float]:
    """Share of formulas in each bin of LENGTH_BIN lengths."""
    bins: Counter = Counter()
    for length, n in counts.items():
        bins[str(int(length) // LENGTH_BIN)] += n
    total = bins.total()
    return {b: n / total for b, n in bins.items()}
