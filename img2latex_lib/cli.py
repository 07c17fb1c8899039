"""The ``img2latex`` command line: prepare | train | predict | evaluate | render | pseudo-label.

Exit codes: 0 all done; 1 an error, or some inputs failed (each named in one line on stderr,
the others done); 2 a usage error; 130 interrupted. TensorFlow's start-up log is kept off
stderr unless ``--verbose`` is given or the user set TensorFlow's log variables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .quiet import import_keras_quietly

#: Exit code of a command some of whose inputs failed (or that failed itself).
FAILED = 1
#: Exit code of a command line argparse refuses.
USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the usage itself is in --help), and
    whose ``--help`` may end with text made only when it is shown (``epilog_of``)."""

    def __init__(self, *args, epilog_of: Callable[[], str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_of = epilog_of

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        if self.epilog_of is not None:
            self.epilog = self.epilog_of()
        return super().format_help()


def _styles_help() -> str:
    """The styles this machine can render, for ``--help`` (asks the TeX installation)."""
    from .styles.registry import styles_help

    return styles_help()


def _add_style_flag(p, several: bool) -> None:
    """``--style``: typeset in a named style (``img2latex styles`` lists them)."""
    p.add_argument("--style", default=None, metavar="NAME[,NAME...]" if several else "NAME",
                   help=("typesetting style(s), listed below; several: each formula gets one "
                         "drawn for it (seeded by --seed)" if several else
                         "typesetting style, listed below") +
                   "; raster presets join with +, e.g. times+screen-96dpi")


def _positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: a number of ``kind`` that must be above zero."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _common() -> argparse.ArgumentParser:
    """Flags every command has."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's and Keras' log lines")
    return common


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="build a data set folder in the im2latex-100k layout",
                       parents=[_common()], epilog_of=_styles_help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--formulas", type=Path, help="a formula list (one per line) to render")
    source.add_argument("--synthetic", type=_positive(int), metavar="N",
                        help="render N synthetic formulas")
    source.add_argument("--im2latex", type=Path, metavar="DIR",
                        help="an im2latex-100k folder: re-render its formulas")
    p.add_argument("--split", default="matching.txt", help="split file of --im2latex")
    p.add_argument("--ids", default=None, metavar="FIRST-LAST",
                   help="only these formula ids of --im2latex (e.g. 0-6974, to keep the "
                        "development test set out)")
    p.add_argument("--renderer", choices=["latex", "mathtext"], default=None,
                   help="default: latex when pdflatex is installed, else mathtext")
    p.add_argument("--template", choices=["im2latex", "amsmath"], default="im2latex")
    _add_style_flag(p, several=True)
    p.add_argument("--rasters", default=None, metavar="PRESET[,PRESET...]",
                   help="with --style: raster presets drawn for each formula too, 'none' "
                   "for the style's own (e.g. none,screen-96dpi,dark,jpeg-70)")
    p.add_argument("--scale", type=_positive(float), default=1.0,
                   help="render at this many times the im2latex size (e.g. 2 or 3: sharp, "
                        "large images like screenshots of a zoomed page)")
    p.add_argument("--limit", type=_positive(int), default=None,
                   help="use only the first N formulas")
    p.add_argument("--sample", type=_positive(int), default=None,
                   help="use N formulas drawn at random (with --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=_positive(int), default=2)


def _add_model_flags(p) -> None:
    """The seed's flag names for the hyperparameters."""
    from .config import Config

    defaults = Config()
    for name in ("embedding_dim", "decoder_units", "enc_out_dim", "attention_head_size",
                 "max_len", "num_epochs", "batch_size", "checkpoint_every",
                 "warmup_steps", "attention_heads", "seed"):
        p.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    p.add_argument("--image_height", type=int, default=None,
                   help=f"input height (default {defaults.image_height}, or the --init model's; "
                   "the CNN is convolutional, so a warm start may change it)")
    for name in ("dropout", "lr", "label_smoothing", "max_minutes"):
        p.add_argument(f"--{name}", type=float, default=getattr(defaults, name))
    p.add_argument("--cnn_widths", type=lambda s: tuple(int(x) for x in s.split(",")),
                   default=defaults.cnn_widths, help="comma-separated, e.g. 16,32,64,64,128")
    p.add_argument("--cnn_pools", type=lambda s: tuple(int(x) for x in s.split(",")),
                   default=defaults.cnn_pools, help="pooling after each CNN block, e.g. 2,2,2,1,1")
    p.add_argument("--save_dir", default=defaults.save_dir)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model (flags as in the seed)",
                       parents=[_common()])
    p.add_argument("--data", nargs="+", required=True,
                   help="data set folder(s), each optionally with formula ids and a repeat "
                   "count: DIR, DIR:0-6974, DIR:0-6974x3; packs (img2latex pack): "
                   "FILE.pack, FILE.packx3; or a committed label set with the folder its "
                   "images were unpacked to: data/labels[@IMAGES][x3]")
    p.add_argument("--val", default=None, help="validation data set folder (DIR or DIR:A-B)")
    p.add_argument("--val_limit", type=_positive(int), default=100,
                   help="validation images decoded")
    p.add_argument("--vocab", type=Path, default=None, help="vocab.json (default: build one)")
    p.add_argument("--min_freq", type=_positive(int), default=2)
    p.add_argument("--augment", action="store_true", help="augment training images")
    p.add_argument("--resume", action="store_true", help="continue from SAVE_DIR/last")
    p.add_argument("--init", type=Path, default=None, help="warm start from a checkpoint")
    p.add_argument("--max_steps", type=int, default=0,
                   help="stop after this many steps; the learning rate decays over them")
    p.add_argument("--distribute", action="store_true",
                   help="data-parallel over all local devices")
    p.add_argument("--bucket_width", type=_positive(int), default=None,
                   help="pad batch images to a multiple of this (default: --width_step); "
                   "larger means fewer shapes to compile under JAX")
    p.add_argument("--length_step", type=_positive(int), default=8,
                   help="pad batch formulas to a multiple of this many tokens")
    p.add_argument("--workers", type=_positive(int), default=1,
                   help="processes preparing batches (more than 1: in parallel with training)")
    _add_model_flags(p)


def _add_pack(sub) -> None:
    p = sub.add_parser("pack", help="shrink data sets into one small training file",
                       parents=[_common()])
    p.add_argument("out", type=Path, help="output file, FILE.pack")
    p.add_argument("--data", nargs="+", required=True, help="data sets as for train --data "
                   "(a repeat count stores the samples that many times: better given to train)")
    p.add_argument("--max_height", type=_positive(int), default=96, help="scale taller images down")
    p.add_argument("--levels", type=_positive(int), default=16, help="grey levels kept")
    p.add_argument("--workers", type=_positive(int), default=2)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="LaTeX of image files", parents=[_common()],
                       description="LaTeX of each image, in order. A file that cannot be read "
                       "gets one line on stderr and the others are still done; the exit code "
                       "is then 1.")
    p.add_argument("images", nargs="*", help="image files; - reads one image from standard "
                   "input (e.g. a pipe from a screenshot tool)")
    p.add_argument("--clipboard", action="store_true",
                   help="read the image on the clipboard (after the files; X11: xclip, "
                   "Wayland: wl-clipboard)")
    p.add_argument("--copy", action="store_true",
                   help="put what is printed on the clipboard too")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="default: the shipped model; with --runtime onnx, a folder that "
                   "img2latex export --format onnx wrote")
    p.add_argument("--runtime", choices=["keras", "onnx"], default="keras",
                   help="onnx: decode an ONNX export with ONNX Runtime (no TensorFlow: starts "
                   "in a fraction of the time)")
    p.add_argument("--beam", type=_positive(int), default=1, help="beam size (1 = greedy)")
    p.add_argument("--temperature", type=_positive(float), default=None,
                   help="sample at this temperature (> 0) instead of taking the best token")
    p.add_argument("--rerank", action="store_true",
                   help="with --beam N: render the beam's candidates and keep the one that "
                   "reproduces the image (in the im2latex style unless --rerank-styles; "
                   "needs pdflatex); where none reproduces it closely, the beam's first stays")
    p.add_argument("--rerank-styles", default=None, metavar="NAMES",
                   help="with --rerank: comma-separated styles (img2latex styles) to render the "
                   "candidates in; each image is compared in the one that matches it best. "
                   "'any' tries one face of each family: im2latex, times, palatino, sans, katex, "
                   "mathjax (for screenshots of papers, slides and web pages; slower)")
    p.add_argument("--companion", type=Path, default=None, metavar="CHECKPOINT",
                   help="with --rerank: also render this checkpoint's beam candidates "
                   "(a second model's mistakes differ; e.g. checkpoints/img2latex-fast)")
    p.add_argument("--render", action="store_true", help="save IMAGE.pred.png: input above "
                   "the rendered prediction")
    p.add_argument("--format", choices=["tsv", "json", "mathml"], default=None,
                   help="tsv (the default for several images): image and LaTeX a line; json: "
                   "every form of each image (latex, tokens, inline, display, mathml; a failed "
                   "image an error field); mathml: MathML instead of LaTeX")
    p.add_argument("--tokens", action="store_true",
                   help="the model's token form (a space between tokens) instead of compact "
                   "LaTeX")
    p.add_argument("--wrap", choices=["none", "inline", "display", "equation"], default="none",
                   help="delimiters: inline $...$, display \\[...\\], or an equation "
                   "environment")
    p.add_argument("--katex", action="store_true",
                   help="rewrite what KaTeX and MathJax lack (\\sp, \\mbox, {\\sl x}, "
                   "\\hspace{.3truecm}, \\label, ...) to equivalents they read")
    p.add_argument("--batch_size", type=_positive(int), default=16)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a data set",
                       parents=[_common()])
    p.add_argument("dataset", type=Path)
    p.add_argument("--split", default="matching.txt")
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--limit", type=_positive(int), default=None)
    p.add_argument("--first_id", type=int, default=None, help="only formula ids >= this")
    p.add_argument("--beam", type=_positive(int), nargs="+", default=[1])
    p.add_argument("--image_match", action="store_true",
                   help="also render and compare (needs pdflatex)")


def _add_render(sub) -> None:
    p = sub.add_parser("render", help="render a formula to a PNG",
                       parents=[_common()], epilog_of=_styles_help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("formula")
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--renderer", choices=["latex", "mathtext"], default=None)
    p.add_argument("--template", choices=["im2latex", "amsmath"], default="im2latex")
    _add_style_flag(p, several=False)


def _add_styles(sub) -> None:
    sub.add_parser("styles", help="list the typesetting styles this machine can render",
                   parents=[_common()])


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="copy a checkpoint without its optimizer state (or "
                       "the weight average of two: --average), or write it as ONNX graphs "
                       "(--format onnx)", parents=[_common()])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path, help="new checkpoint folder, or the ONNX export's folder")
    p.add_argument("--format", choices=["keras", "onnx"], default="keras",
                   help="onnx: the encoder and one decoder step as ONNX graphs with the "
                   "vocabulary and preprocessing settings, for predict --runtime onnx")
    p.add_argument("--float16", action="store_true",
                   help="with --format onnx: store the weights as float16 (half the size)")
    p.add_argument("--average", type=Path, metavar="OTHER",
                   help="export the weight average of CHECKPOINT and OTHER (two fine-tunes of "
                   "one model; same vocabulary and architecture)")
    p.add_argument("--weight", type=float, default=0.5,
                   help="with --average: OTHER's share of the average (default 0.5)")


def _add_pseudo_label(sub) -> None:
    p = sub.add_parser("pseudo-label", help="label unlabeled images with the model and keep "
                       "the labels whose render reproduces the image",
                       parents=[_common()])
    p.add_argument("images", nargs="+", type=Path, help="image files, or folders of PNG files")
    p.add_argument("--out", type=Path, required=True, help="output data set folder (resumable)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    p.add_argument("--beam", type=_positive(int), default=5, help="n-best candidates per image")
    p.add_argument("--round", type=int, default=1, help="round number recorded per decision")
    p.add_argument("--limit", type=_positive(int), default=None, help="only the first N images")
    p.add_argument("--exclude", type=Path, nargs="*", default=[],
                   help="pseudo-label folders of earlier rounds: skip the images they accepted")
    p.add_argument("--threshold", type=float, default=None, help="largest accepted distance")
    p.add_argument("--margin", type=float, default=None, help="least margin to a rival")
    p.add_argument("--batch_size", type=_positive(int), default=32)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="img2latex", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_prepare, _add_pack, _add_train, _add_predict, _add_evaluate, _add_render,
                _add_styles, _add_export, _add_pseudo_label):
        add(sub)
    return parser


def _renderer(name: str | None, template: str = "im2latex", scale: float = 1.0):
    from .render import IM2LATEX_DPI, LatexRenderer, MathtextRenderer, default_renderer

    dpi = round(IM2LATEX_DPI * scale)
    if name == "latex":
        return LatexRenderer(template=template, dpi=dpi)
    if name == "mathtext":
        return MathtextRenderer(dpi=dpi)
    return default_renderer(dpi)


def _id_range(spec: str | None, where: str = "--ids") -> range | None:
    """``FIRST-LAST`` (both included) as a range; None stays None. ``where`` names the spec in
    the error."""
    if spec is None:
        return None
    first, dash, last = spec.partition("-")
    if not (dash and first.isdigit() and last.isdigit() and int(first) <= int(last)):
        raise ValueError(f"{where} {spec}: expected FIRST-LAST, e.g. 0-6974")
    return range(int(first), int(last) + 1)


def cmd_prepare(args) -> None:
    from .datasets import build_dataset, formula_problem, load
    from .tokenizer import normalize

    if args.formulas:
        formulas = args.formulas.read_text(encoding="utf-8").splitlines()
    elif args.synthetic:
        from .synth import generate_formulas

        formulas = generate_formulas(args.synthetic, seed=args.seed)
    else:
        formulas = load(args.im2latex, split=args.split, ids=_id_range(args.ids)).formulas
    if args.sample:
        import random

        formulas = random.Random(args.seed).sample(formulas, len(formulas))  # a shuffled copy
    wanted = args.sample or args.limit or len(formulas)
    usable, skipped = [], 0
    for formula in formulas:
        if len(usable) == wanted:
            break
        normalized = normalize(formula)
        if formula_problem(normalized) is None:
            usable.append(normalized)
        else:
            skipped += 1
    if skipped:
        print(f"skipped {skipped} empty, corrupt or too long formulas")
    renderer = _styled(args) or _renderer(args.renderer, args.template, args.scale)
    dataset = build_dataset(usable, renderer, args.out, chunk_size=_chunk_size(renderer),
                            workers=args.workers)
    print(dataset.report())


def _data_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``DIR[:FIRST-LAST][xREPEAT]`` split into its folder, ids and repeat count. A path that
    exists as written is not split (a folder called ``renders_x2`` is not ``renders_`` twice)."""
    folder, id_spec, repeat = re.fullmatch(r"(.+?)(?::(\d+-\d+))?(?:x(\d+))?", spec).groups()
    if repeat and not id_spec and all(Path(part).exists() for part in spec.split("@")):
        return spec, None, None
    return folder, id_spec, repeat


def _datasets(specs: list[str]) -> tuple[list, list[str]]:
    """Images and normalized formulas of data sets given as ``DIR[:FIRST-LAST][xREPEAT]`` or
    ``FILE.pack[xREPEAT]``."""
    from .datasets import formula_problem, load
    from .labels import is_label_set, load_label_spec
    from .packing import PACK_SUFFIX, read_pack
    from .tokenizer import normalize

    images, formulas = [], []
    for spec in specs:
        folder, id_spec, repeat = _data_spec(spec)
        if folder.endswith(PACK_SUFFIX):
            if id_spec:
                raise ValueError(f"{spec}: a pack takes no formula ids")
            pack_images, pack_formulas = read_pack(folder)
            pairs = list(zip(pack_images, map(normalize, pack_formulas), strict=True))
            report = f"{folder}: {len(pairs)} samples"
        elif is_label_set(folder.partition("@")[0]):
            if id_spec:
                raise ValueError(f"{spec}: a label set takes no formula ids")
            dataset = load_label_spec(folder)
            pairs = [(s.image, normalize(s.formula)) for s in dataset.samples]
            report = dataset.report()
        else:
            dataset = load(folder, ids=_id_range(id_spec, where=f"{folder}:"))
            pairs = [(s.image, normalize(s.formula)) for s in dataset.samples]
            report = dataset.report()
        kept = [(image, formula) for image, formula in pairs if formula_problem(formula) is None]
        dropped = len(pairs) - len(kept)
        note = f", {dropped} too long once normalized" if dropped else ""
        print(report + note + (f", used {repeat} times" if repeat else ""))
        images += [image for image, _ in kept] * int(repeat or 1)
        formulas += [formula for _, formula in kept] * int(repeat or 1)
    return images, formulas


def cmd_train(args) -> None:
    from .batching import BucketedDataset
    from .config import ARCHITECTURE, Config
    from .preprocess import Augmenter
    from .tokenizer import Vocab
    from .training import Trainer

    config = Config(**{k: v for k, v in vars(args).items()
                       if k in Config.__dataclass_fields__ and v is not None})
    try:
        config.validate()
    except ValueError as error:
        raise ValueError(f"--{error}") from None  # the message starts with the field's name
    if args.init:
        start = Config.load(args.init / "config.json")
        inherited = [name for name in ARCHITECTURE
                     if not (name == "image_height" and args.image_height)]
        config = replace(config, **{name: getattr(start, name) for name in inherited})
        config.validate()
        print(f"architecture from {args.init / 'config.json'} (image height "
              f"{config.image_height})")
    images, formulas = _datasets(args.data)
    if args.vocab or args.init:
        vocab = Vocab.load(args.vocab or args.init / "vocab.json")
    else:
        vocab = Vocab.build(formulas, args.min_freq)
    train = BucketedDataset(images, formulas, vocab, batch_size=config.batch_size,
                            height=config.image_height, max_width=config.max_width,
                            width_step=args.bucket_width or config.width_step,
                            length_step=args.length_step, max_len=config.max_len,
                            augmenter=Augmenter() if args.augment else None, seed=config.seed,
                            workers=args.workers, use_multiprocessing=args.workers > 1)
    val_images, val_formulas = _datasets([args.val]) if args.val else ([], [])
    init = args.init / "model.weights.h5" if args.init else None
    trainer = Trainer(config, vocab, train, val_images[: args.val_limit],
                      val_formulas[: args.val_limit], distribute=args.distribute,
                      init_weights=init)
    trainer.fit(resume=args.resume)
    saved = [f"{config.save_dir}/{name}" for name in ("last", "best")
             if (Path(config.save_dir) / name).is_dir()]
    print(f"checkpoints in {' and '.join(saved)}" if saved else "no checkpoint was saved")


def cmd_pack(args) -> None:
    from .packing import PACK_SUFFIX, write_pack

    if args.out.suffix != PACK_SUFFIX:
        raise ValueError(f"{args.out}: a pack's name must end in {PACK_SUFFIX}")
    images, formulas = _datasets(args.data)
    counts = write_pack(args.out, images, formulas, args.max_height, args.levels, args.workers)
    print(f"{args.out}: {counts['packed']} images, {counts['bytes'] / 1e6:.1f} MB"
          + (f", {counts['skipped']} unusable images left out" if counts["skipped"] else ""))


def _report(line: str) -> None:
    """One line on stderr, in the command line's own voice."""
    print(f"img2latex: {line}", file=sys.stderr)


def _rerank_styles(names: str | None) -> tuple[str, ...]:
    """The render check's styles from ``--rerank-styles`` (checked before the model loads)."""
    if not names:
        return ("im2latex",)
    from .rerank import PROBE_STYLES
    from .styles import missing

    styles = PROBE_STYLES if names.strip() == "any" else tuple(
        name.strip() for name in names.split(",") if name.strip())
    for name in styles:
        reason = missing(name)  # raises for an unknown name
        if reason is not None and names.strip() != "any":
            raise ValueError(f"--rerank-styles: style {name!r} {reason}")
    return styles


def _text(prediction: str, args) -> str:
    """A prediction (token form) as ``predict`` prints it: compact LaTeX (or ``--tokens``),
    ``--katex``-safe, ``--wrap``-ped, or ``--format mathml``'s MathML."""
    from .formats import compact, mathml, wrapped
    from .portable import portable
    from .tokenizer import to_latex

    if args.format == "mathml":
        return mathml(compact(portable(prediction)), display=True)
    formula = portable(prediction) if args.katex else prediction
    return wrapped(to_latex(formula) if args.tokens else compact(formula), args.wrap)


def _forms(prediction: str, args) -> dict[str, str | None]:
    """Every form of a prediction for ``--format json`` (``--katex`` applies to all)."""
    from .formats import forms
    from .portable import portable

    return forms(portable(prediction) if args.katex else prediction)


def _producer(args, rerank_styles: tuple[str, ...]):
    """The producer of ``--runtime``: a Keras checkpoint's, or an ONNX export's (no Keras)."""
    companions = [args.companion] if args.companion else []
    if args.runtime == "onnx":
        from .runtime import OnnxProducer

        if args.checkpoint is None:
            raise ValueError("--runtime onnx needs --checkpoint DIR, a folder that img2latex "
                             "export --format onnx CHECKPOINT DIR wrote")
        return OnnxProducer(args.checkpoint, companions=companions, rerank_styles=rerank_styles)
    from .decoding import LatexProducer

    return LatexProducer(args.checkpoint, companions=companions, rerank_styles=rerank_styles)


def cmd_predict(args) -> int:
    from .inputs import read_clipboard, read_inputs

    if args.companion and not args.rerank:
        raise ValueError("--companion adds candidates to the render check: give --rerank too")
    if args.rerank_styles and not args.rerank:
        raise ValueError("--rerank-styles chooses the render check's styles: give --rerank too")
    rerank_styles = _rerank_styles(args.rerank_styles)
    if args.rerank and args.beam < 2:
        raise ValueError(f"--rerank needs a beam size of 2 or more (it chooses among the "
                         f"beam's candidates), not --beam {args.beam}")
    if not args.images and not args.clipboard:
        raise ValueError("give image files, - (standard input) or --clipboard")
    if args.render and args.format:
        raise ValueError("--render prints one line per image: leave out --format")
    if args.format == "mathml" and (args.tokens or args.wrap != "none"):
        raise ValueError("--format mathml writes MathML: leave out --tokens and --wrap")
    producer = _producer(args, rerank_styles)
    config = producer.config
    inputs = read_inputs(args.images, config.image_height, config.max_width)
    if args.clipboard:
        inputs.append(read_clipboard(config.image_height, config.max_width))
    for item in inputs:
        for line in ([item.error] if item.error else item.warnings):
            _report(line if item.error else f"warning: {line}")
    good = [item for item in inputs if item.image is not None]
    printed: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        printed.append(line)

    failed = len(inputs) - len(good) + _predicted(producer, inputs, args, emit)
    if args.copy and printed:
        from .clipboard import ClipboardError, copy_text

        try:
            copy_text("\n".join(printed))
        except ClipboardError as error:
            _report(str(error))
            failed += 1
    return FAILED if failed else 0


def _predicted(producer, inputs: list, args, emit) -> int:
    """Predict the loaded ``inputs`` and ``emit`` each output line; the number that failed
    after loading (no MathML form)."""
    from .formats import MathMLError
    from .inputs import figure_paths, tsv_field

    several = len(inputs) > 1
    if args.render:
        import matplotlib.pyplot as plt

        for item, out in zip(inputs, figure_paths([i.name for i in inputs]), strict=True):
            if item.image is None:
                continue
            latex, figure = producer.predict(item.image, beam_size=args.beam, render=True,
                                             rerank=args.rerank)
            figure.savefig(out, bbox_inches="tight", dpi=120)
            plt.close(figure)
            latex = _text(latex, args)
            emit(f"{tsv_field(item.name)}\t{latex}\t{tsv_field(str(out))}" if several
                 else latex)
        return 0
    good = [item for item in inputs if item.image is not None]
    predictions = producer.predict(
        [item.image for item in good], beam_size=args.beam, temperature=args.temperature,
        batch_size=args.batch_size, rerank=args.rerank) if good else []
    found = iter(predictions)
    results = [(item, None if item.image is None else next(found)) for item in inputs]
    if args.format == "json":
        emit(json.dumps([{"image": item.name, **_forms(text, args)} if text is not None
                         else {"image": item.name, "error": item.error}
                         for item, text in results], indent=2, ensure_ascii=False))
        return 0
    failed = 0
    for item, prediction in results:
        if prediction is None:
            continue
        try:
            text = _text(prediction, args)
        except MathMLError as error:
            _report(f"{item.name}: {error}")
            failed += 1
            continue
        emit(f"{tsv_field(item.name)}\t{text}" if several or args.format == "tsv" else text)
    return failed


def cmd_evaluate(args) -> int:
    from .datasets import load
    from .decoding import LatexProducer
    from .inputs import read_input
    from .metrics import evaluate, format_table

    ids = range(args.first_id, 10**9) if args.first_id is not None else None
    dataset = load(args.dataset, split=args.split, ids=ids)
    print(dataset.report(), file=sys.stderr)
    producer = LatexProducer(args.checkpoint)
    height, max_width = producer.config.image_height, producer.config.max_width
    samples, images = [], []
    for sample in dataset.samples[: args.limit]:
        item = read_input(sample.image, height, max_width)
        if item.image is None:
            _report(f"{item.error} (left out)")
        else:
            samples.append(sample)
            images.append(item.image)
    failed = len(dataset.samples[: args.limit]) - len(samples)
    renderer = _renderer("latex") if args.image_match else None
    rows = {}
    for beam in args.beam:
        predictions = producer.predict(images, beam_size=beam) if images else []
        name = "greedy" if beam == 1 else f"beam {beam}"
        rows[name] = evaluate([s.formula for s in samples], predictions, renderer=renderer)
    print(f"{len(samples)} samples of {args.dataset.name}"
          + (f" ({failed} unreadable images left out)" if failed else ""))
    print(format_table(rows))
    return FAILED if failed else 0


def _styled(args):
    """The renderer of ``--style`` (one style, or a seeded mix of several), or None."""
    if args.style is None:
        return None
    if args.renderer or args.template != "im2latex" or getattr(args, "scale", 1.0) != 1.0:
        raise ValueError("--style chooses the engine, font and resolution: leave out "
                         "--renderer, --template and --scale")
    from .styles import StyleMix, style_renderer

    names = [name.strip() for name in args.style.split(",") if name.strip()]
    rasters = getattr(args, "rasters", None)
    if len(names) == 1 and not rasters:
        return style_renderer(names[0])
    return StyleMix(names, seed=getattr(args, "seed", 0), rasters=None if rasters is None else [
        None if preset.strip() == "none" else preset.strip() for preset in rasters.split(",")])


def _chunk_size(renderer) -> int:
    """Formulas per render call: a style mix splits each call by style, so it gets enough for
    every style's share to fill a TeX run (about 64 formulas each)."""
    from .styles import StyleMix

    if isinstance(renderer, StyleMix):
        return min(4096, 64 * len(renderer.styles) * len(renderer.rasters))
    return 64


def cmd_styles(args) -> None:
    print(_styles_help())


def cmd_render(args) -> None:
    image = (_styled(args) or _renderer(args.renderer, args.template)).render(args.formula)
    image.save(args.out)
    print(f"{args.out}: {image.width}x{image.height}")


def cmd_export(args) -> None:
    if args.average is not None and args.format == "onnx":
        raise ValueError("--average writes a Keras checkpoint: average first, then export that "
                         "with --format onnx")
    if args.format == "onnx":
        from .export import export_onnx

        out = export_onnx(args.checkpoint, args.out, float16=args.float16)
        sizes = sum(path.stat().st_size for path in out.glob("*.onnx"))
        print(f"{out}: {sizes / 1e6:.1f} MB of ONNX graphs"
              + (" (float16 weights)" if args.float16 else ""))
        return
    if args.float16:
        raise ValueError("--float16 applies to --format onnx only")
    from .checkpoints import WEIGHTS_FILE, average_checkpoints, export_checkpoint

    if args.average is not None:
        out = average_checkpoints(args.checkpoint, args.average, args.out, args.weight)
    else:
        out = export_checkpoint(args.checkpoint, args.out)
    print(f"{out}: {(out / WEIGHTS_FILE).stat().st_size / 1e6:.1f} MB of weights")


def cmd_pseudo_label(args) -> int:
    from .decoding import LatexProducer
    from .selftrain import (
        DEFAULT_MARGIN,
        DEFAULT_THRESHOLD,
        Verifier,
        accepted_names,
        image_files,
        pseudo_label,
    )

    missing = [path for path in args.images if not path.exists()]
    for path in missing:
        _report(f"{path}: no such file or folder")
    excluded = accepted_names(args.exclude)
    images = [p for p in image_files([p for p in args.images if p not in missing])
              if p.name not in excluded][: args.limit]
    verifier = Verifier(threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
                        margin=DEFAULT_MARGIN if args.margin is None else args.margin)
    summary = pseudo_label(LatexProducer(args.checkpoint), images, args.out, verifier,
                           round_index=args.round, beam_size=args.beam,
                           batch_size=args.batch_size)
    for failure in summary.failures:
        _report(failure)
    print(f"{args.out}: {summary}")
    return FAILED if missing or summary.failures else 0


COMMANDS = {"prepare": cmd_prepare, "pack": cmd_pack, "train": cmd_train,
            "predict": cmd_predict, "evaluate": cmd_evaluate, "render": cmd_render,
            "styles": cmd_styles,
            "export": cmd_export, "pseudo-label": cmd_pseudo_label}


def _keras_backend() -> str:
    """The backend Keras will choose, read without importing it (environment, then keras.json)."""
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return json.loads((home / "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _skip_unused_jax() -> None:
    """TensorFlow imports JAX, for its TFLite converter, whenever JAX is installed: about 1 s of
    a 9 s ``predict`` cold start. Under the TensorFlow backend nothing here uses JAX, so a fresh
    process marks it absent (``import jax`` then raises ImportError, which TensorFlow expects)."""
    if not {"jax", "keras", "tensorflow"} & set(sys.modules) and _keras_backend() == "tensorflow":
        sys.modules["jax"] = None


#: Commands that never import Keras.
_WITHOUT_KERAS = ("prepare", "render", "styles")


def _needs_keras(args) -> bool:
    """Whether the command imports Keras (``predict --runtime onnx`` does not)."""
    return args.command not in _WITHOUT_KERAS and getattr(args, "runtime", "keras") != "onnx"


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors that are the user's to mend (bad files, flags, formulas): one line each.
    (Evaluated only when something was raised, so a fast command imports nothing for it.)"""
    from .render import RenderError

    return ValueError, OSError, RuntimeError, RenderError


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command. Errors become one line on stderr; the exit code is 0 when
    everything was done, 1 on an error or when some inputs failed, 2 on a usage error."""
    if argv is None and sys.argv[1:2] == ["predict"]:  # a process of its own
        _skip_unused_jax()
    args = make_parser().parse_args(argv)
    try:
        if _needs_keras(args) and not args.verbose:
            import_keras_quietly()
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        print("img2latex: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as error:
        _report(f"error: {error}")
        return FAILED


if __name__ == "__main__":
    sys.exit(main())

