"""Compare generated formulas with the real im2latex-100k val formulas (ids before the dev-test).

Prints length quantiles, the most frequent tokens side by side, the share of formulas with each
structure, the total-variation distance between the token distributions, how much of the real
token mass the generated vocabulary covers, and (if pdflatex is installed) the share of generated
formulas that compile in the im2latex template.

    python benchmarks/synth_report.py [--n 5000] [--seed 0] [--compile 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from img2latex_lib.synth import DEV_TEST_START, generate_formulas
from img2latex_lib.tokenizer import normalize

ROOT = Path(__file__).resolve().parents[1]
VAL_FORMULAS = ROOT / "data" / "im2latex100k_val" / "formulas.norm.lst"

STRUCTURES = {
    r"\frac": r"\\frac ",
    "^": r"\^ ",
    "_": r"_ ",
    r"\left": r"\\left",
    r"\begin{array}": r"\\begin\{array\}",
    r"\sqrt": r"\\sqrt ",
    r"\sum \int \prod": r"\\(sum|int|prod|oint) ",
    "accents": r"\\(bar|hat|tilde|vec|dot|ddot|check|breve|overline|underline|widetilde|widehat) ",
    "fonts": r"\\math(rm|cal|bf|sf|it|tt) \{ . \}",
    "function names": r"\\(operatorname\*?|mathrm) \{ (s i n|c o s|e x p|l n|l o g) ",
    "greek": r"\\(alpha|beta|gamma|delta|mu|nu|pi|phi|psi|sigma|lambda|theta) ",
    "spacing": r"(\\[,;:!] |\\q?quad |~ |\\ )",
    "( )": r"\( ",
}


def quantiles(lengths: list[int]) -> list[float]:
    deciles = statistics.quantiles(lengths, n=10)
    return [deciles[0], statistics.median(lengths), deciles[8]]


def token_shares(formulas: list[str]) -> Counter:
    counts = Counter(t for f in formulas for t in f.split())
    total = sum(counts.values())
    return Counter({t: n / total for t, n in counts.items()})


def structure_shares(formulas: list[str]) -> dict[str, float]:
    return {
        name: sum(bool(re.search(pattern, f + " ")) for f in formulas) / len(formulas)
        for name, pattern in STRUCTURES.items()
    }


def compile_share(formulas: list[str]) -> str:
    if importlib.util.find_spec("img2latex_lib.render") is None:
        return "skipped (img2latex_lib.render not available)"
    from img2latex_lib.render import LatexRenderer, latex_available

    if not latex_available():
        return "skipped (pdflatex not installed)"
    start = time.perf_counter()
    results = LatexRenderer(template="im2latex", strict=True).render_batch(formulas)
    failed = [r for r in results if r.error is not None]
    for result in failed[:5]:
        print(f"  failed: {result.formula}\n    {result.error[:200]}")
    ok = len(results) - len(failed)
    return (
        f"{ok}/{len(results)} = {ok / len(results):.1%} compile "
        f"({time.perf_counter() - start:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="formulas to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", type=int, default=200, help="formulas to compile (0: skip)")
    args = parser.parse_args()
    if not VAL_FORMULAS.exists():
        raise SystemExit(
            f"{VAL_FORMULAS.relative_to(ROOT)} not found: link the real val data "
            "into data/im2latex100k_val"
        )
    lines = VAL_FORMULAS.read_text(encoding="utf-8").splitlines()[:DEV_TEST_START]
    real = [normalize(f) for f in lines if f.strip()]
    start = time.perf_counter()
    generated = generate_formulas(args.n, seed=args.seed)
    seconds = time.perf_counter() - start
    print(
        f"real: {len(real)} val formulas (ids < {DEV_TEST_START}, normalized); "
        f"generated: {len(generated)} in {seconds:.1f} s ({len(generated) / seconds:.0f}/s)\n"
    )

    real_q = quantiles([len(f.split()) for f in real])
    gen_q = quantiles([len(f.split()) for f in generated])
    print("length (tokens)   p10    p50    p90")
    print(f"  real          {real_q[0]:5.0f}  {real_q[1]:5.0f}  {real_q[2]:5.0f}")
    print(f"  generated     {gen_q[0]:5.0f}  {gen_q[1]:5.0f}  {gen_q[2]:5.0f}\n")

    real_tokens, gen_tokens = token_shares(real), token_shares(generated)
    print(
        f"{'rank':>4}  {'real token':<14}{'share':>7}  {'its generated share':>20}"
        f"   {'generated token':<16}{'share':>7}"
    )
    for rank, ((rt, rs), (gt, gs)) in enumerate(
        zip(real_tokens.most_common(30), gen_tokens.most_common(30), strict=True), 1
    ):
        print(f"{rank:>4}  {rt:<14}{rs:7.2%}  {gen_tokens[rt]:20.2%}   {gt:<16}{gs:7.2%}")

    print(f"\n{'structure (share of formulas)':<30}{'real':>8}{'generated':>11}")
    gen_structures = structure_shares(generated)
    for name, share in structure_shares(real).items():
        print(f"  {name:<28}{share:8.1%}{gen_structures[name]:11.1%}")

    differences = {t: gen_tokens[t] - real_tokens[t] for t in real_tokens | gen_tokens}
    tvd = 0.5 * sum(abs(d) for d in differences.values())
    coverage = sum(share for t, share in real_tokens.items() if t in gen_tokens)
    ranked = sorted(differences, key=differences.get)
    print(f"\ntoken total-variation distance: {tvd:.3f}")
    print("  most under-generated: " + ", ".join(f"{t} {differences[t]:+.2%}" for t in ranked[:6]))
    print("  most over-generated:  " + ", ".join(f"{t} {differences[t]:+.2%}" for t in ranked[-6:]))
    print(
        f"vocabulary: real {len(real_tokens)} tokens, generated {len(gen_tokens)}; "
        f"generated vocabulary covers {coverage:.1%} of real token occurrences"
    )
    if args.compile:
        print(
            f"compile check ({args.compile} formulas, im2latex template): "
            f"{compile_share(generated[: args.compile])}"
        )


if __name__ == "__main__":
    main()
