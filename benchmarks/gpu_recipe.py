"""Train on a lent GPU machine in one command, and judge the result here in a second.

The GPU machine has JAX but neither TensorFlow nor Keras, no TeX and none of ``../shared``; it
receives the checkout, 64 MiB in all. So the work is split in three:

    python benchmarks/gpu_recipe.py prepare          # here: packs and wheels in data/gpu/
    python3 benchmarks/gpu_recipe.py train --minutes 7 --out "$OUT"    # there, carry data/gpu
    python benchmarks/gpu_recipe.py evaluate runs/gpu/model --name gpu1 # here, back from $OUT
    python benchmarks/gpu_recipe.py dry-run          # all three on this CPU, tiny, under JAX

``prepare`` packs (``img2latex pack``) the real im2latex-100k val images with ids 0-6974, every
accepted label of ``data/labels/`` with its training image, and style-diverse renders (given
with ``--styled``, or rendered here in the mix of :data:`STYLE_MIX` x :data:`RASTER_MIX`), writes
Keras' wheels for Python 3.12 beside them, and checks that checkout and packs travel (at most
64 MiB). ``train`` installs the wheels where Keras is missing, runs ``img2latex train`` under
JAX on the packs (from scratch, or ``--init`` for a warm start when the time is short) with the
shipped model's architecture and few batch shapes, exports ``last`` and leaves in ``--out`` the
six files that come back. ``evaluate`` scores the checkpoint on the development test set and in
the styles, and writes its ``MODEL_CARD.md``; replacing the shipped model stays a decision made
on those figures. Never trained on: val ids 6975 and up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / "data" / "gpu"
SHIPPED = REPO / "checkpoints" / "img2latex-base"
TRAVEL_LIMIT = 64 * 2**20
WHEELS = ("keras", "namex", "optree")  # what the GPU machine's image lacks for Keras 3
#: Faces of the renders (hard ones twice) and rasterisations, as in the styles3 fine-tune.
STYLE_MIX = ("times,times-tx,palatino,palatino-px,termes-lua,pagella-lua,bonum-lua,schola-lua,"
             "asana-lua,dejavu-lua,mathtext-stix,mathtext-dejavuserif,mathtext-cm,sans,slides,"
             "euler,katex,mathjax,pdf-viewer,lmodern,cm-12pt,times,palatino,termes-lua,"
             "pagella-lua,mathtext-stix")
RASTER_MIX = ("none,none,screen-72dpi,screen-96dpi,screen-144dpi,print-300dpi,jpeg-70,dark,"
              "gamma-heavy,gamma-light,loose,tight,sepia")
#: Pack name -> times it is read per epoch.
REPEATS = {"real": 3, "labels": 2, "styled": 1}
#: Batch shapes few enough for JAX to compile once each (see docs/training-on-a-gpu.md).
SHAPE_FLAGS = ["--bucket_width", "400", "--length_step", "76"]
ARCHITECTURE = ("cnn_widths", "cnn_pools", "enc_out_dim", "embedding_dim", "decoder_units",
                "attention_heads", "attention_head_size", "dropout", "image_height")
#: ``img2latex`` with TensorFlow hidden, as on the GPU machine (so the dry run proves it unused).
WITHOUT_TENSORFLOW = ("import sys, runpy; sys.modules['tensorflow'] = None; "
                      "runpy.run_module('img2latex_lib.cli', run_name='__main__')")


def _cli(*args: str, env: dict | None = None, quiet: bool = False) -> str:
    """Run ``img2latex ARGS`` from this checkout; its stdout (raises with its stderr)."""
    done = subprocess.run([sys.executable, "-m", "img2latex_lib.cli", *args], cwd=REPO,
                          env=env or _env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"img2latex {args[0]} failed: {done.stderr.strip()[-600:]}")
    if not quiet:
        print(done.stdout.strip(), flush=True)
    return done.stdout


def _env(**extra: str) -> dict:
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **extra)


def _shown(path: Path | str) -> str:
    """A path as the recipe writes it: relative to the checkout where inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


# --- prepare (here) -------------------------------------------------------------------------

def _tex_formulas(n: int, seed: int, out: Path) -> Path:
    """``n`` physics/maths formulas (``../shared``) whose tokens the shipped vocabulary has."""
    import random

    from img2latex_lib.tokenizer import Vocab, normalize, tokenize

    vocab = Vocab.load(SHIPPED / "vocab.json")
    max_len = json.loads((SHIPPED / "config.json").read_text())["max_len"]
    source = REPO.parent / "shared" / "data" / "tex_formulas"
    lines = [line for path in sorted(source.glob("*.lst"))
             for line in path.read_text(encoding="utf-8").splitlines()]
    random.Random(seed).shuffle(lines)
    kept = []
    for line in lines:
        tokens = tokenize(normalize(line))
        if 0 < len(tokens) <= max_len and all(t in vocab.token_to_id for t in tokens):
            kept.append(" ".join(tokens))
            if len(kept) == n:
                break
    out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return out


def _render_styled(work: Path, n_tex: int, seed: int) -> list[str]:
    """Val formulas 0-6974 and ``n_tex`` physics/maths formulas rendered in the style mix."""
    from _devtest import VAL_DIR

    formulas = work / "styled_formulas.lst"
    _tex_formulas(n_tex, seed, work / "tex.lst")
    val = (VAL_DIR / "formulas.norm.lst").read_text(encoding="utf-8").splitlines()[:6975]
    formulas.write_text("\n".join(val) + "\n" + (work / "tex.lst").read_text(), encoding="utf-8")
    folder = work / "styled"
    if not (folder / "matching.txt").exists():
        _cli("prepare", str(folder), "--formulas", str(formulas), "--style", STYLE_MIX,
             "--rasters", RASTER_MIX, "--seed", str(seed), "--workers", str(os.cpu_count() or 1))
    return [_shown(folder)]


def _travelling_bytes(carry: Path) -> int:
    """What a device run sends: tracked and untracked-not-ignored files, and ``carry``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    files = [REPO / name for name in listed if name] + list(carry.rglob("*"))
    return sum(path.stat().st_size for path in files if path.is_file())


def _download_wheels(folder: Path) -> None:
    from importlib.metadata import version

    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                 "manylinux2014_x86_64") for arg in ("--platform", tag)]
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    *platforms, "-d", str(folder), *pins], check=True)


def prepare(args: argparse.Namespace) -> None:
    """Packs, wheels and a manifest in ``args.carry``."""
    from _devtest import VAL_DIR

    carry, work = args.carry, args.carry.parent / "gpu_work"
    carry.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        from _common import synthetic_dataset

        synthetic_dataset(24, folder=work / "synth")
        sources = {"real": [str(work / "synth")], "styled": [str(work / "synth")]}
    else:
        images = args.images or REPO / "data" / "cache" / "train_unlabeled"
        sources = {"real": [f"{_shown(VAL_DIR)}:0-6974"],
                   "labels": [f"data/labels@{_shown(images)}"],
                   "styled": args.styled or _render_styled(work, args.tex, args.seed)}
    packs = {}
    for name, specs in sources.items():
        pack = carry / f"{name}.pack"
        if args.quick or not pack.exists():
            _cli("pack", str(pack), "--data", *specs, "--workers", str(os.cpu_count() or 1))
        packs[name] = {"file": pack.name, "sources": specs, "repeat": REPEATS[name],
                       "bytes": pack.stat().st_size}
    if not args.quick:
        _download_wheels(carry / "wheels")
    manifest = {"packs": packs, "prepared": time.strftime("%Y-%m-%d")}
    (carry / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    travelling = _travelling_bytes(carry)
    print(f"{carry}: {len(packs)} packs, "
          f"{sum(p['bytes'] for p in packs.values()) / 1e6:.1f} MB; the device run sends "
          f"{travelling / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f}")
    if travelling > TRAVEL_LIMIT:
        raise SystemExit("too much to travel: pack fewer renders (--styled, --tex)")


# --- train (there) --------------------------------------------------------------------------

def _keras_env(carry: Path) -> dict:
    """The environment of the training run: JAX, and the carried wheels where Keras is missing."""
    env = _env(KERAS_BACKEND="jax")
    probe = subprocess.run([sys.executable, "-c", "import keras"], env=env, capture_output=True,
                           check=False)
    if probe.returncode != 0:
        site = Path("/tmp/img2latex-site")
        wheels = sorted((carry / "wheels").glob("*.whl"))
        if not wheels:
            raise SystemExit(f"Keras is not installed and {carry / 'wheels'} has no wheels: "
                             "run prepare")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--target", str(site), *map(str, wheels)], check=True)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    return env


def _train_flags(args: argparse.Namespace, manifest: dict, save_dir: Path) -> list[str]:
    config = json.loads((SHIPPED / "config.json").read_text())
    carry = _shown(args.carry)
    data = [f"{carry}/{p['file']}" + (f"x{p['repeat']}" if p["repeat"] > 1 else "")
            for p in manifest["packs"].values()]
    flags = ["--data", *data, "--vocab", _shown(SHIPPED / "vocab.json"), "--augment",
             "--batch_size", str(args.batch_size), *SHAPE_FLAGS,
             "--workers", str(max(1, (os.cpu_count() or 2) - 2)), "--num_epochs", "1000",
             "--checkpoint_every", "500", "--lr", str(args.lr),
             "--warmup_steps", str(args.warmup_steps), "--save_dir", _shown(save_dir)]
    if args.init:
        flags += ["--init", _shown(args.init)]
    else:
        flags += [arg for name in ARCHITECTURE
                  for arg in (f"--{name}", _flag_value(config[name]))]
    if args.max_steps:
        flags += ["--max_steps", str(args.max_steps)]
    return flags + ["--max_minutes", str(args.minutes)]


def train(args: argparse.Namespace) -> None:
    """Train under JAX on the carried packs; leave the exported model and the logs in --out."""
    manifest = json.loads((args.carry / "manifest.json").read_text())
    save_dir = Path("/tmp/img2latex-gpu-run") if not args.quick else args.out / "run"
    shutil.rmtree(save_dir, ignore_errors=True)
    env = _keras_env(args.carry)
    flags, device = _train_flags(args, manifest, save_dir), _device()
    started = time.time()
    done = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "train", *flags],
                          cwd=REPO, env=env,
                          capture_output=True, text=True, check=False)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"training failed: {done.stderr.strip()[-800:]}")
    _cli("export", str(save_dir / "last"), str(args.out / "model"), env=env)
    for name in ("log.csv", "steps.csv"):
        if (save_dir / name).exists():
            shutil.copy(save_dir / name, args.out / name)
    manifest["training"] = {"minutes": round((time.time() - started) / 60, 1),
                            "flags": flags,
                            "state": json.loads((save_dir / "last" / "state.json").read_text()),
                            "device": device}
    (args.out / "model" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{args.out / 'model'}: trained {manifest['training']['minutes']} min, "
          f"{manifest['training']['state']['global_step']} steps on {device}")


def _device() -> str:
    found = shutil.which("nvidia-smi")
    if found:
        names = subprocess.run([found, "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, check=False).stdout.split("\n")
        if names[0].strip():
            return names[0].strip()
    return f"{os.cpu_count()} CPU cores"


# --- evaluate (here) ------------------------------------------------------------------------

def _benchmark(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                          env=_env(TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed: {done.stderr.strip()[-600:]}")
    return "\n".join(line for line in done.stdout.splitlines() if line.startswith("|"))


def _rendered_scores(checkpoint: Path) -> str:
    """``img2latex evaluate`` on eight freshly rendered synthetic formulas."""
    import tempfile

    from _common import synthetic_dataset

    folder = Path(tempfile.mkdtemp(prefix="img2latex-recipe-"))
    synthetic_dataset(8, seed=2, folder=folder)
    return _cli("evaluate", str(folder), "--checkpoint", str(checkpoint), "--beam", "1",
                env=_env(TF_CPP_MIN_LOG_LEVEL="3"))


def evaluate(args: argparse.Namespace) -> None:
    """Development-test and style figures of a trained checkpoint, written as its model card."""
    from _devtest import VAL_DIR

    checkpoint = args.checkpoint
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    quick = ["--quick"] if args.quick else []
    if (VAL_DIR / "matching.txt").exists():
        accuracy = _benchmark("accuracy.py", "--checkpoint", str(checkpoint), "--beams", "1",
                              "--name", args.name, *quick)
        styles = _benchmark("styles.py", "--checkpoint", str(checkpoint), "--best", "none",
                            *quick)
    elif args.quick:  # a checkout without the val data: a few fresh renders show it decodes
        accuracy, styles = _rendered_scores(checkpoint), "(no val data here)"
    else:
        raise SystemExit(f"{VAL_DIR}: the development test set is not here (see data/README.md)")
    training = manifest["training"]
    packs = "\n".join(f"| {name} | {', '.join(p['sources'])} | x{p['repeat']} | "
                      f"{p['bytes'] / 1e6:.1f} MB |" for name, p in manifest["packs"].items())
    card = f"""# {args.name} — trained by `benchmarks/gpu_recipe.py`

{training['minutes']} minutes on {training['device']} under JAX, {training['state']['global_step']}
steps; {'warm start' if '--init' in training['flags'] else 'from scratch'}, the shipped model's
architecture and vocabulary.

## Data (packs prepared {manifest['prepared']})

| pack | sources | per epoch | size |
|---|---|---|---|
{packs}

## Development test set (val ids 7475 and up, never trained on), greedy

{accuracy}

## The same formulas in other styles, greedy

{styles}

## Command

```bash
img2latex train {' '.join(training['flags'])}
```
"""
    (checkpoint / "MODEL_CARD.md").write_text(card)
    print(card)


# --- the whole recipe, small, on this CPU -----------------------------------------------------

def dry_run(args: argparse.Namespace) -> None:
    """Prepare, train (JAX, TensorFlow hidden as on the GPU machine) and evaluate, tiny."""
    base = args.out
    carry = base / "carry"
    common = ["--carry", str(carry)]
    main(["prepare", "--quick", *common])
    main(["train", "--quick", *common, "--out", str(base / "out"), "--minutes", "1",
          "--max_steps", "2", "--batch_size", "8", "--warmup_steps", "1"])
    main(["evaluate", "--quick", str(base / "out" / "model"), "--name", "dry-run"])


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    steps = {name: sub.add_parser(name) for name in ("prepare", "train", "evaluate", "dry-run")}
    for name in ("prepare", "train"):
        steps[name].add_argument("--carry", type=Path, default=CARRY)
        steps[name].add_argument("--quick", action="store_true")
    steps["prepare"].add_argument("--styled", nargs="+", default=None,
                                  help="style-diverse data sets already rendered")
    steps["prepare"].add_argument("--tex", type=int, default=12000,
                                  help="physics/maths formulas rendered in the style mix")
    steps["prepare"].add_argument("--images", type=Path, default=None,
                                  help="the unpacked training images the labels name")
    steps["prepare"].add_argument("--seed", type=int, default=5)
    steps["train"].add_argument("--out", type=Path, required=True)
    steps["train"].add_argument("--minutes", type=float, default=7.0)
    steps["train"].add_argument("--init", type=Path, default=None)
    steps["train"].add_argument("--batch_size", type=int, default=128)
    steps["train"].add_argument("--lr", type=float, default=1e-3)
    steps["train"].add_argument("--warmup_steps", type=int, default=1000)
    steps["train"].add_argument("--max_steps", type=int, default=0)
    steps["evaluate"].add_argument("checkpoint", type=Path)
    steps["evaluate"].add_argument("--name", default="gpu")
    steps["evaluate"].add_argument("--quick", action="store_true")
    steps["dry-run"].add_argument("--out", type=Path, default=REPO / "runs" / "gpu_dry_run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    args = _arguments(argv)
    {"prepare": prepare, "train": train, "evaluate": evaluate, "dry-run": dry_run}[
        args.command](args)


if __name__ == "__main__":
    main()
