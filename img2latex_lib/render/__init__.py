"""Formula -> image: `LatexRenderer` (pdflatex + Ghostscript, batched) and `MathtextRenderer`.

`default_renderer()` picks `LatexRenderer` when TeX is installed and `MathtextRenderer` (matplotlib
only) otherwise. The package, one job a module: :mod:`.base` (the `Renderer` interface, its
results and errors, the im2latex finishing of a raster), :mod:`.safety` (`check_formula`, which
refuses unsafe formulas before pdflatex sees them), :mod:`.latex` (pdflatex and Ghostscript:
the page-shipping macros, the sandboxed runs, the log, the bisection that isolates a failing
formula) and :mod:`.mathtext` (matplotlib's mathtext). Importing it imports neither matplotlib
nor TensorFlow.
"""

from .base import IM2LATEX_DPI, Renderer, RenderError, RenderResult, shrink
from .latex import LatexRenderer, latex_available
from .mathtext import MathtextRenderer, mathtext_source
from .safety import MAX_FORMULA_LENGTH, check_formula

__all__ = [
    "IM2LATEX_DPI",
    "MAX_FORMULA_LENGTH",
    "LatexRenderer",
    "MathtextRenderer",
    "RenderError",
    "RenderResult",
    "Renderer",
    "check_formula",
    "default_renderer",
    "latex_available",
    "mathtext_source",
    "shrink",
]


def default_renderer(dpi: int = IM2LATEX_DPI) -> Renderer:
    """A `LatexRenderer` (im2latex template) when pdflatex and gs exist, else `MathtextRenderer`;
    ``dpi`` above `IM2LATEX_DPI` renders larger than the im2latex images."""
    if latex_available():
        return LatexRenderer(dpi=dpi)
    return MathtextRenderer(dpi=dpi)

