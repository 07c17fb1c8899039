"""The ``python -m img2latex_lib.synth`` command: ``fit`` the statistics, ``sample`` formulas."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .fit import fit_statistics
from .generator import generate_formulas
from .stats import DEV_TEST_START, STATS_FILE


def _read_formulas(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read formulas ({error})") from None
    return text.splitlines()[:lines]


def main(argv: Sequence[str] | None = None) -> None:
    """``fit FORMULAS`` writes the package statistics; ``sample`` prints generated formulas."""
    parser = argparse.ArgumentParser(
        prog="python -m img2latex_lib.synth",
        description=sys.modules[__package__].__doc__,  # the package's overview
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit statistics on a formulas.norm.lst file")
    fit.add_argument("formulas", type=Path)
    fit.add_argument(
        "--lines",
        type=int,
        default=DEV_TEST_START,
        help="use only the first LINES lines (default: %(default)s, the val lines "
        "before the held-out dev-test set)",
    )
    fit.add_argument("--out", type=Path, default=Path(__file__).with_name(STATS_FILE))
    fit.add_argument("--rounds", type=int, default=12, help="simulation rounds (%(default)s)")
    fit.add_argument(
        "--samples", type=int, default=2000, help="formulas generated per round (%(default)s)"
    )
    sample = commands.add_parser("sample", help="print generated formulas")
    sample.add_argument("-n", type=int, default=10)
    sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "fit":
            formulas = _read_formulas(args.formulas, args.lines)
            stats = fit_statistics(formulas, rounds=args.rounds, samples=args.samples)
            stats["source"] = {"file": args.formulas.name, "lines": len(formulas)}
            args.out.write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
            print(f"fitted on {stats['formulas']} formulas -> {args.out.name}")
        else:
            print("\n".join(generate_formulas(args.n, args.seed)))
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
