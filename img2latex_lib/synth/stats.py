"""The statistics file shipped with the package: its name, version and the formulas it was
fitted on, and loading it."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

STATS_FILE = "synth_stats.json"
STATS_VERSION = 1
#: Lines of the im2latex-100k val formulas from this index on are the held-out dev-test set.
DEV_TEST_START = 7475
#: Formula lengths are corrected in bins of this many tokens for the too wide ones drawn again.
LENGTH_BIN = 10


@cache
def default_statistics() -> dict:
    """The statistics shipped with the package (fitted on im2latex-100k val formulas)."""
    try:
        return json.loads(resources.files(__package__).joinpath(STATS_FILE).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{STATS_FILE} is missing from img2latex_lib/synth: run "
            "`python -m img2latex_lib.synth fit <formulas.norm.lst>`"
        ) from None
