"""The pdflatex renderer isolates bad formulas in a bounded number of runs, and no formula changes
how the next one in the same run renders (real pdflatex and Ghostscript; runs are counted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from img2latex_lib.render import (
    LatexRenderer,
    RenderError,
    RenderResult,
    check_formula,
    latex_available,
)
from img2latex_lib.render.latex import Log, Run, _halvings

needs_latex = pytest.mark.skipif(not latex_available(), reason="pdflatex or gs not installed")
# Long enough for a batch of good formulas on a loaded 2-core machine: a run that times out is
# split up, which changes what these tests count (runs, and whether an attack shares a run).
TIMEOUT = 8.0
GOOD = ["a + b", r"\frac { 1 } { 2 }", "x ^ { 2 }", r"\sqrt { y }", "c"]
AB = "a + b"
ESCAPED = "breaks out of its box"


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group `LatexRenderer._compile` compiles (pdflatex still runs)."""
    sizes: list[int] = []
    compile_ = LatexRenderer._compile

    def counted(self: LatexRenderer, formulas: list[str]) -> Run:
        sizes.append(len(formulas))
        return compile_(self, formulas)

    monkeypatch.setattr(LatexRenderer, "_compile", counted)
    return sizes


# Formulas that make pdflatex stop while they are typeset: TeX's 255 grouping levels, and two
# endless loops (they need \makeatletter, which the screen refuses: they run with screen=False).
STOPPERS = [
    pytest.param("{ " * 300 + "a" + " }" * 300, "grouping levels (255)", True, id="braces"),
    pytest.param(r"\makeatletter \@whilenum 1>0 \do {}", "timed out", False, id="whilenum"),
    pytest.param(r"\makeatletter \@namedef{x}{\x}\x", "timed out", False, id="self-expanding"),
]


@needs_latex
@pytest.mark.slow
@pytest.mark.parametrize("formula, reason, screen", STOPPERS)
def test_a_formula_that_stops_tex_is_reported_once(
    formula: str, reason: str, screen: bool, runs: list[int]
) -> None:
    renderer = LatexRenderer(workers=1, timeout=TIMEOUT, screen=screen)
    start = time.monotonic()
    [alone] = renderer.render_batch([formula])
    assert alone.image is None and reason in alone.error
    assert runs == [1], "one run, not a bisection of an empty group"
    assert time.monotonic() - start < TIMEOUT + 8

    runs.clear()
    batch = GOOD[:2] + [formula] + GOOD[2:]
    start = time.monotonic()
    results = renderer.render_batch(batch)
    assert [r.formula for r in results] == batch
    assert [r.image is not None for r in results] == [True, True, False, True, True, True]
    assert reason in results[2].error
    # Blamed from the log: a run, and one without it; a capacity error is confirmed alone.
    assert len(runs) <= 3 and runs[0] == len(batch)
    assert time.monotonic() - start < TIMEOUT + 10


# A background job of a script (nohup, `cmd &` without job control) starts with SIGINT ignored,
# and TeX inherits that; the renderer must still interrupt it, so that the log names the loop.
IGNORING_SIGINT = f"""
import json, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
from img2latex_lib.render import LatexRenderer
runs, compile_ = [], LatexRenderer._compile
LatexRenderer._compile = lambda self, group: runs.append(len(group)) or compile_(self, group)
batch = {GOOD[:2]!r} + [{STOPPERS[1].values[0]!r}] + {GOOD[2:]!r}
results = LatexRenderer(workers=1, timeout={TIMEOUT}, screen=False).render_batch(batch)
print(json.dumps([runs, [r.error for r in results]]))
"""


@needs_latex
@pytest.mark.slow
def test_a_loop_is_blamed_from_the_log_in_a_process_that_ignores_sigint() -> None:
    child = subprocess.run(
        [sys.executable, "-c", IGNORING_SIGINT], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    runs, errors = json.loads(child.stdout.splitlines()[-1])
    assert [error is not None for error in errors] == [False, False, True, False, False, False]
    assert "timed out" in errors[2]
    assert runs == [6, 5], "blamed from the log, not bisected"


def test_the_endless_loops_do_not_pass_the_screen() -> None:
    for formula, _, screen in (p.values for p in STOPPERS):
        if not screen:
            with pytest.raises(RenderError, match=r"\\makeatletter is not allowed"):
                check_formula(formula)


@needs_latex
def test_an_escape_from_the_box_is_blamed_and_the_pages_before_it_kept(runs: list[int]) -> None:
    # Passes the screen: \iffalse hides a \begin and braces from it; \end{array} then closes
    # the display's group, and the next } the formula's vbox, so that \medmuskip=60mu would
    # hold for the formulas after it.
    escape = (
        r"\iffalse \begin{array}{c} \fi \end{array} \iffalse{\fi} \medmuskip=60mu "
        r"\setbox0\vbox\iftrue{\else}\fi \begin{matrix} \iffalse \end{matrix} \fi a"
    )
    check_formula(escape)
    results = LatexRenderer(workers=1).render_batch(["x", "y", escape, AB])
    assert ESCAPED in results[2].error
    assert runs == [4, 1], "x and y come from the first run; only a + b compiles again"
    alone = LatexRenderer(workers=1).render(AB)
    assert np.array_equal(np.asarray(results[3].image), np.asarray(alone))


@needs_latex
@pytest.mark.slow
def test_runs_the_log_cannot_explain_are_bisected_a_bounded_number_of_times(
    runs: list[int],
) -> None:
    # An extra page at the end of the document: the pages do not match the formulas, and the
    # log names no formula, so the renderer has to bisect.
    extra_page = r"\AtEndDocument{\mbox{x}\par} a"
    renderer = LatexRenderer(workers=1, timeout=TIMEOUT, screen=False)
    for n, bad in ((16, {3}), (8, {1, 6}), (4, set(range(4)))):
        runs.clear()
        formulas = [extra_page if i in bad else f"x _ {{ {i} }}" for i in range(n)]
        results = renderer.render_batch(formulas)
        assert [r.image is None for r in results] == [i in bad for i in range(n)]
        assert len(runs) <= min(2 * n - 1, 1 + 2 * len(bad) * math.ceil(math.log2(n))), runs


@needs_latex
def test_bisection_has_a_hard_cap_then_goes_one_formula_per_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a stand-in for pdflatex that explains nothing: `_halvings(n)`, then singles."""
    page = np.full((40, 40), 255, np.uint8)
    page[20, 20] = 0
    compiled: list[int] = []

    def unexplained(self: LatexRenderer, formulas: list[str]) -> Run:
        compiled.append(len(formulas))
        if any(formula.startswith("bad") for formula in formulas):
            return Run(Log())
        everything = list(range(len(formulas)))
        return Run(Log(shipped=everything), dict.fromkeys(everything, page))

    monkeypatch.setattr(LatexRenderer, "_compile", unexplained)
    renderer = LatexRenderer(workers=1)
    n = 100
    for bad in ({50}, {10, 50, 90}, set(range(n))):
        compiled.clear()
        formulas = [f"bad {i}" if i in bad else f"x {i}" for i in range(n)]
        results = renderer.render_batch(formulas)
        assert [r.formula for r in results] == formulas
        assert [r.error is not None for r in results] == [i in bad for i in range(n)]
        assert len(compiled) <= 1 + 2 * min(len(bad) * math.ceil(math.log2(n)), _halvings(n)) + n
        if len(bad) < 4:
            assert len(compiled) <= 1 + 2 * len(bad) * math.ceil(math.log2(n))


# Formulas that would change how a later formula of the same pdflatex run renders, each with a
# probe formula that shows the change and the command the screen names when it refuses it.
# Every one was seen to leak without the screen (test_without_the_screen_the_attack_leaks).
LEAKS = [
    (r"\global\medmuskip=60mu", AB, "global"),
    (r"\globaldefs=1 \medmuskip=60mu", AB, "globaldefs"),
    (r"\global\everydisplay{\medmuskip=60mu}", AB, "global"),
    (r"\fontdimen6\textfont2=30pt", AB, "fontdimen"),
    (r"\hyphenchar\font=65", r"\mbox{\number\hyphenchar\font}", "hyphenchar"),
    (r"\skewchar\textfont1=-1", r"\vec{f} \hat{A}", "skewchar"),
    (r"\newcount\frac", r"\frac{a}{b}", "newcount"),
    (r"\newbox\frac", r"\frac{a}{b}", "newbox"),
    (r"\newsavebox\foo", r"x \foo y", "newsavebox"),
    (r"\newcounter{foo}", r"x \mbox{\thefoo}", "newcounter"),
    (r"\newtheorem{foo}{Foo}", r"x \thefoo", "newtheorem"),
    (r"\errorstopmode", r"x \undefinedfoo", "errorstopmode"),
    (r"\deadcycles=5", r"\mbox{\number\deadcycles}", "deadcycles"),
    (r"\insertpenalties=5", r"\mbox{\number\insertpenalties}", "insertpenalties"),
    (r"\box\strutbox", r"\fbox{\strut a}", "box"),
    (r"\setbox0\vbox{\mark{Q}a}\setbox2\vsplit0 to 0pt", r"x \splitfirstmark", "vsplit"),
    (r"\partokenname\relax", r"\mbox{\parbox{5em}{a \vskip 1pt b}}", "partokenname"),  # loops
    (r"\pagenumbering{roman}", r"\mbox{\thepage}", "pagenumbering"),
    (r"\appendix", r"\mbox{\thesection}", "appendix"),
    (r"\makeatletter \g@addto@macro\frac{x}", r"\frac{a}{b}", "makeatletter"),
    (r"\AddToHook{shipout/background}{\put(30,-30){\rule{9pt}{9pt}}}", AB, "AddToHook"),
    (r"\DeclareFontShape{OT1}{cmr}{m}{n}{<->cmss10}{}", r"\mbox{\fontsize{13}{13}\selectfont a}",
     "DeclareFontShape"),
    (r"\UseName{global}\medmuskip=60mu", AB, "UseName"),
    (r"\ExplSyntaxOn \dim_gset:Nn \medmuskip {1pt}", AB, "ExplSyntaxOn"),
]
# Refused as well: global by TeX's rules or LaTeX's, though no probe showed it in a picture
# (or, for the group escapes, caught by the template as well: see ESCAPES).
ALSO_REFUSED = [
    (r"\aftergroup\aftergroup\aftergroup\medmuskip", "aftergroup"),
    *((rf"\{name} x", name) for name in (
        "everymath", "everyhbox", "everyvbox", "everypar", "everycr", "everyeof", "everyjob",
        "efcode", "newdimen", "newskip", "newmuskip", "newtoks", "newlength",
        "newif", "newfam", "newlanguage", "newfont", "newread", "newwrite", "newenvironment",
        "batchmode", "scrollmode", "nonstopmode", "interactionmode", "pagegoal", "pagetotal",
        "pagestretch", "pageshrink", "pagedepth", "prevgraf", "hyphenation", "patterns",
        "unhbox", "unvbox", "wd", "ht", "dp", "egroup", "bgroup", "endgroup", "begingroup",
        "endarray", "enddocument", "enddisplaymath", "endcsname", "endinput", "makeatother",
        "AtEndDocument", "AtBeginDocument", "AtBeginDvi", "AtBeginShipout", "AddToHookNext",
        "DeclareMathOperator", "DeclareUnicodeCharacter", "DeclareSymbolFont",
        "SetSymbolFont", "SetMathAlphabet", "NewDocumentCommand", "NewCommandCopy",
        "ExpandArgs", "RawShipout", "UseHook", "partokencontext",
    )),
]
# Passed by the screen and harmless: counters are set back before each formula (each of these
# changed the next formula before that); and, with screen=False so that TeX sees them, formulas
# that get out of their box, caught by the template, and tokens sent out of three groups with
# \aftergroup, which end in the group of the formula's block.
HARMLESS = [
    (r"\setcounter{page}{7}", r"\mbox{\thepage}", True, None),
    (r"\addtocounter{equation}{5}", r"\mbox{\theequation}", True, None),
    (r"\stepcounter{equation}", r"\mbox{\theequation}", True, None),
    (r"\refstepcounter{equation}", r"\mbox{\theequation}", True, None),
    (r"\footnote{x}", r"a \footnotemark", True, None),
    (r"\boldmath x", AB, True, None),
    (r"\mbox{\fontsize{30}{30}\selectfont x}", AB, True, None),
    (r"\endgroup \egroup \medmuskip=60mu \setbox0\vbox\bgroup\begingroup", AB, False, ESCAPED),
    (r"\vskip0pt \endgroup \egroup \medmuskip=60mu \setbox0\vbox\bgroup\begingroup", AB, False,
     ESCAPED),
    (r"\enddisplaymath \endgroup \egroup \medmuskip=60mu \setbox0\vbox\bgroup\begingroup", AB,
     False, ESCAPED),
    ("".join("\\aftergroup" * 7 + token for token in (r"\medmuskip", "=", "6", "0", " m", " u")),
     AB, False, None),
]


@pytest.fixture(scope="module")
def alone() -> dict[str, RenderResult]:
    """Each probe rendered alone (in a run of its own), computed once."""
    if not latex_available():
        pytest.skip("pdflatex or gs not installed")
    renderer = LatexRenderer(workers=1, screen=False)  # some probes use refused commands
    probes = sorted({probe for _, probe, *_ in LEAKS + HARMLESS})
    return {probe: renderer.render_batch([probe])[0] for probe in probes}


def same(result: RenderResult, expected: RenderResult) -> bool:
    if result.image is None or expected.image is None:
        return result.error == expected.error
    return np.array_equal(np.asarray(result.image), np.asarray(expected.image))


@pytest.mark.parametrize(
    "attack, command",
    [(attack, command) for attack, _, command in LEAKS] + ALSO_REFUSED,
)
def test_the_screen_refuses_what_could_leak(attack: str, command: str) -> None:
    with pytest.raises(RenderError, match=rf"\\{command} is not allowed"):
        check_formula(attack + " a")


@needs_latex
def test_refused_formulas_never_reach_tex(runs: list[int], alone: dict) -> None:
    attacks = [attack + " a" for attack, _, _ in LEAKS]
    results = LatexRenderer(workers=1).render_batch([*attacks, AB])
    for result, (_, _, command) in zip(results[:-1], LEAKS, strict=True):
        assert f"\\{command} is not allowed" in result.error
    assert runs == [1] and same(results[-1], alone[AB])


@needs_latex
@pytest.mark.parametrize("attack, probe", [(attack, probe) for attack, probe, _ in LEAKS])
def test_without_the_screen_the_attack_leaks(attack: str, probe: str, alone: dict) -> None:
    """Proves the probes: each attack really changes the formula after it in its run."""
    _, after = LatexRenderer(workers=1, timeout=TIMEOUT, screen=False).render_batch(
        [attack + " a", probe]
    )
    assert not same(after, alone[probe])


@needs_latex
@pytest.mark.parametrize("attack, probe, screen, error", HARMLESS)
def test_the_next_formula_renders_as_if_alone(
    attack: str, probe: str, screen: bool, error: str | None, alone: dict, runs: list[int]
) -> None:
    renderer = LatexRenderer(workers=1, timeout=TIMEOUT, screen=screen)
    first, after = renderer.render_batch([attack + " a", probe])
    assert runs[0] == 2, "both formulas were in one pdflatex run"
    assert same(after, alone[probe])
    assert (first.error is None) if error is None else (error in first.error)


DEEP = "{ " * 300 + "a" + " }" * 300  # more groups than TeX has levels
SAFE = [
    "a", "x", "1", "2", "{", "}", r"\frac", "^", "_", r"\left(", r"\right)", r"\begin{array}{cc}",
    r"\end{array}", "&", r"\\", r"\mathrm", "é", "∑", "😀", "\x00", "\x07", DEEP,
]
DANGEROUS = [
    r"\global", r"\def", r"\egroup", r"\csname", r"\makeatletter", "%", "$", "^^", r"\input",
    r"\endgroup", r"\aftergroup", "\ud800", "\x1b", "\x7f", "\t", "\r", "\n", "{" * 300, " ",
]


def balanced(tokens: list[str]) -> str:
    """The tokens with closers that close nothing dropped and what is open closed at the end."""
    out: list[str] = []
    closers: list[str] = []
    for token in tokens:
        if token in ("}", r"\end{array}"):
            if not closers or closers[-1] != token:
                continue
            closers.pop()
        elif token in ("{", r"\begin{array}{cc}"):
            closers.append("}" if token == "{" else r"\end{array}")
        out.append(token)
    return " ".join(out + closers[::-1])


# Two in three pass the screen (balanced, from safe tokens) and reach TeX; the others mix in
# the dangerous tokens, glued together or spaced.
formulas = st.one_of(
    st.lists(st.sampled_from(SAFE), max_size=15).map(balanced),
    st.lists(st.sampled_from(SAFE), max_size=15).map(balanced),
    st.lists(st.sampled_from(SAFE + DANGEROUS), max_size=12).map("".join),
)


@given(st.one_of(formulas, st.text(max_size=80)))
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_fuzz_check_formula_raises_only_render_error(formula: str) -> None:
    try:
        line = check_formula(formula)
    except RenderError:
        return
    assert isinstance(line, str) and line and "\n" not in line


@needs_latex
@pytest.mark.slow
@given(st.lists(formulas, min_size=1, max_size=3))
@settings(max_examples=40, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_render_batch_never_hangs_or_raises(batch: list[str]) -> None:
    timeout = 3.0
    start = time.monotonic()
    results = LatexRenderer(workers=1, timeout=timeout).render_batch(batch)
    assert time.monotonic() - start < 4 * timeout
    assert [r.formula for r in results] == batch
    for result in results:
        assert (result.image is None) != (result.error is None)
        assert result.image is not None or (isinstance(result.error, str) and result.error)
