"""Test-wide settings: notebooks run in quick mode (tiny data, a few steps) under pytest."""

import os

os.environ.setdefault("IMG2LATEX_QUICK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
