"""Shared test fixtures: where the optional real data lives, and a small output folder."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VAL_DIR = ROOT / "data" / "im2latex100k_val"


@pytest.fixture
def val_dir() -> Path:
    """The real im2latex-100k validation split, if a developer linked it into data/."""
    if not (VAL_DIR / "formulas.norm.lst").exists():
        pytest.skip("real im2latex-100k val data not present in data/im2latex100k_val")
    return VAL_DIR
