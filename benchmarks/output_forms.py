"""How many formulas each output form serves: KaTeX typesets them (as written and after
``portable``), MathML converts them without a leftover command, and the compact form tokenizes
back to the same tokens.

    python benchmarks/output_forms.py                       # every im2latex-100k val formula
    python benchmarks/output_forms.py --predictions test-output/accuracy/styles2-greedy.tsv
    python benchmarks/output_forms.py --quick               # 200 synthetic formulas

Without the val data (``data/im2latex100k_val``) it reads formulas from the synthetic generator.
``--predictions`` scores what a model wrote (a file from ``benchmarks/accuracy.py``) instead.
KaTeX is Debian's libjs-katex run in Node (``portable.katex_errors``), MathML is latex2mathml
(``formats.mathml``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import VAL_DIR, table  # noqa: E402
from _devtest import read_predictions  # noqa: E402

from img2latex_lib.formats import MathMLError, compact, mathml  # noqa: E402
from img2latex_lib.portable import katex_errors, portable  # noqa: E402
from img2latex_lib.tokenizer import normalize, to_latex, tokenize  # noqa: E402

QUICK = 200
SHOWN_FAILURES = 5


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, default=None,
                        help="an id<TAB>reference<TAB>prediction file: score its predictions")
    parser.add_argument("--n", type=int, default=None, help="at most this many formulas")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK} synthetic formulas, whatever data is present")
    return parser.parse_args(argv)


def _formulas(args: argparse.Namespace) -> tuple[list[str], str]:
    """The formulas to score (token form, normalized) and a description of them."""
    if args.predictions is not None:
        found = list(read_predictions(args.predictions).values())
        what = f"predictions in {args.predictions.name}"
    elif not args.quick and (VAL_DIR / "formulas.norm.lst").exists():
        lines = (VAL_DIR / "formulas.norm.lst").read_text(encoding="utf-8").splitlines()
        found = [normalize(line) for line in lines]
        what = "im2latex-100k val formulas"
    else:
        from img2latex_lib.synth import generate_formulas

        found = generate_formulas(QUICK, seed=1)
        what = "synthetic formulas"
    formulas = [f for f in found if f.strip()][: args.n or (QUICK if args.quick else None)]
    return formulas, what


def _mathml_error(latex: str) -> str | None:
    try:
        mathml(latex)
    except MathMLError as error:
        return str(error)
    return None


def _share(errors: Sequence[str | None]) -> str:
    return f"{sum(e is None for e in errors) / max(len(errors), 1):.1%}"


def _commonest(errors: Sequence[str | None]) -> str:
    counts = Counter(e.split(" at position")[0][:70] for e in errors if e is not None)
    return "; ".join(f"{n}x {e}" for e, n in counts.most_common(SHOWN_FAILURES)) or "-"


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    formulas, what = _formulas(args)
    written = [compact(f) for f in formulas]
    rewritten = [compact(portable(f)) for f in formulas]
    checks: list[tuple[str, Callable[[list[str]], list[str | None]]]] = [
        ("KaTeX typesets", katex_errors),
        ("MathML converts", lambda latex: [_mathml_error(x) for x in latex]),
    ]
    rows, failures = [], []
    for name, check in checks:
        as_written, after = check(written), check(rewritten)
        rows.append([name, _share(as_written), _share(after)])
        failures.append(f"{name}, after portable: {_commonest(after)}")
    same = [None if tokenize(c) == tokenize(to_latex(f)) else "differs"
            for c, f in zip(written, formulas, strict=True)]
    rows.append(["compact form tokenizes back to the same tokens", _share(same), "-"])
    print(f"{len(formulas)} {what}")
    print(table(["form", "as written", "after portable (--katex)"], rows))
    print("\n".join(["", "commonest failures:", *failures]))


if __name__ == "__main__":
    main()
