import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2latex_lib.checkpoints import save_checkpoint
from img2latex_lib.cli import main
from img2latex_lib.datasets import build_dataset, load
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.model import Config, build_model
from img2latex_lib.render import default_renderer
from img2latex_lib.tokenizer import Vocab
from tests.test_model import SMALL, randomized

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = build_model(Config(**SMALL), verbose=False)
    model.set_weights([randomized(w, np.random.default_rng(5)) for w in model.weights])
    vocab = Vocab.build(["a b c d e f g h i j k l m n o p"])
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, vocab)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(3):
        image = Image.new("L", (60 + 30 * i, 24), 255)
        image.paste(0, (5, 5, 20 + 20 * i, 18))
        paths.append(folder / f"{i}.png")
        image.save(paths[-1])
    return paths


def test_predict_one_image_prints_latex_only(checkpoint, images, capsys):
    assert main(["predict", str(images[0]), "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "\t" not in out[0]


def test_predict_several_images_tsv_and_json_in_order(checkpoint, images, capsys):
    args = ["predict", *map(str, images), "--checkpoint", str(checkpoint)]
    assert main(args) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [row[0] for row in rows] == [str(p) for p in images]
    assert main([*args, "--format", "json", "--beam", "2"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in records] == [str(p) for p in images]
    assert all(isinstance(r["latex"], str) for r in records)


def test_predict_render_writes_a_figure(checkpoint, images, tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(images[1].read_bytes())
    assert main(["predict", str(image), "--render", "--checkpoint", str(checkpoint)]) == 0
    assert (tmp_path / "x.pred.png").exists()


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "nothing.png: file not found"),
    ("not_image", "notes.png"),
    ("bad_checkpoint", "checkpoint is missing model.weights.h5"),
])
def test_errors_are_one_line_with_nonzero_exit(setup, message, checkpoint, images, tmp_path):
    image, ckpt = images[0], checkpoint
    if setup == "missing":
        image = tmp_path / "nothing.png"
    elif setup == "not_image":
        image = tmp_path / "notes.png"
        image.write_text("this is not a picture")
    else:
        ckpt = tmp_path / "ckpt"
        ckpt.mkdir()
        (ckpt / "config.json").write_text((checkpoint / "config.json").read_text())
        (ckpt / "vocab.json").write_text((checkpoint / "vocab.json").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "img2latex_lib.cli", "predict", str(image), "--checkpoint",
         str(ckpt)], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("img2latex:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr


def test_prepare_synthetic_and_render(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "synth"), "--synthetic", "6", "--seed", "3"]) == 0
    assert "samples" in capsys.readouterr().out
    assert len(list((tmp_path / "synth" / "images").glob("*.png"))) >= 5
    assert main(["render", r"\frac{a}{b}", "-o", str(tmp_path / "f.png")]) == 0
    assert Image.open(tmp_path / "f.png").size[1] > 10


def test_prepare_rerenders_chosen_ids_of_an_im2latex_folder_at_a_larger_scale(tmp_path, capsys):
    formulas = ["a + b", "x ^ { 2 }", "\\frac { 1 } { y }", "c d"]
    source = build_dataset(formulas, default_renderer(), tmp_path / "src", progress=False)
    out = tmp_path / "big"
    assert main(["prepare", str(out), "--im2latex", str(tmp_path / "src"), "--ids", "1-2",
                 "--scale", "2"]) == 0
    big = load(out)
    assert sorted(big.formulas) == sorted(formulas[1:3])
    small = {s.formula: Image.open(s.image).size for s in source.samples}
    for sample in big.samples:  # twice the size, give or take a pixel of a small render
        ratio = max(Image.open(sample.image).size) / max(small[sample.formula])
        assert 1.5 < ratio < 2.5, (sample.formula, ratio)
    capsys.readouterr()
    assert main(["prepare", str(tmp_path / "bad"), "--im2latex", str(tmp_path / "src"),
                 "--ids", "2-1"]) != 0
    assert "--ids 2-1: expected FIRST-LAST" in capsys.readouterr().err


def test_warm_start_takes_vocab_and_architecture_from_the_initial_checkpoint(checkpoint, tmp_path,
                                                                             capsys):
    build_dataset(["a b c", "d + e", "f g", "h i j"], default_renderer(), tmp_path / "data",
                  progress=False)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--init", str(checkpoint),
                 "--max_steps", "2", "--batch_size", "2", "--checkpoint_every", "0",
                 "--save_dir", str(run)]) == 0
    assert "architecture from" in capsys.readouterr().out
    start, trained = Config.load(checkpoint / "config.json"), Config.load(run / "config.json")
    assert trained.cnn_widths == start.cnn_widths and trained.decoder_units == start.decoder_units
    assert trained.max_steps == 2
    assert (run / "last" / "vocab.json").read_text() == (checkpoint / "vocab.json").read_text()
    assert trained.image_height == start.image_height


def test_warm_start_may_change_the_input_height(checkpoint, tmp_path):
    """The CNN is convolutional: the same weights train and predict at a taller input."""
    build_dataset(["a b c", "d + e"], default_renderer(), tmp_path / "data", progress=False)
    start = Config.load(checkpoint / "config.json")
    taller = start.image_height + start.stride * 2
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--init", str(checkpoint),
                 "--image_height", str(taller), "--max_steps", "1", "--batch_size", "2",
                 "--checkpoint_every", "0", "--save_dir", str(run)]) == 0
    trained = Config.load(run / "config.json")
    assert trained.image_height == taller and trained.cnn_widths == start.cnn_widths
    producer = LatexProducer(run / "last")
    image = next((tmp_path / "data" / "images").glob("*.png"))
    assert producer.config.image_height == taller and isinstance(producer.predict(image), str)


@pytest.mark.skipif(not (ROOT / "checkpoints" / "img2latex-base").exists(), reason="no model")
def test_pseudo_label_with_the_shipped_model(tmp_path, capsys):
    from img2latex_lib.datasets import load
    from img2latex_lib.render import LatexRenderer, latex_available
    from img2latex_lib.selftrain import read_decisions

    if not latex_available():
        pytest.skip("pdflatex or gs not installed")
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    formulas = [r"x ^ { 2 } + y ^ { 2 } = 1", r"a + b", r"\frac { 1 } { 2 }", r"\alpha"]
    for k, image in enumerate(LatexRenderer(workers=1).render_batch(formulas)):
        image.image.save(folder / f"{k}.png")
    args = ["pseudo-label", str(folder), "--out", str(tmp_path / "r1"), "--beam", "3",
            "--limit", "3", "--checkpoint", str(ROOT / "checkpoints" / "img2latex-base")]
    assert main(args) == 0
    assert "0 decided before" in capsys.readouterr().out
    decisions = read_decisions(tmp_path / "r1")
    assert sorted(decisions) == ["0.png", "1.png", "2.png"], "numeric order, --limit 3"
    assert {row["status"] for row in decisions.values()} <= {"accepted", "rejected"}
    accepted = {name for name, row in decisions.items() if row["status"] == "accepted"}
    assert {s.image.name for s in load(tmp_path / "r1").samples} == accepted
    assert main(args) == 0
    assert "3 decided before" in capsys.readouterr().out
    args[3] = str(tmp_path / "r2")
    assert main([*args[:-4], "--exclude", str(tmp_path / "r1")]) == 0
    assert set(read_decisions(tmp_path / "r2")) == {"0.png", "1.png", "2.png", "3.png"} - accepted


def test_predict_process_skips_jax_only_under_tensorflow(checkpoint, images):
    """The predict process keeps TensorFlow from importing JAX (a second of its cold start),
    and still works; under the JAX backend it leaves JAX alone."""
    probe = ("import sys; from img2latex_lib import cli; sys.argv = ['img2latex', 'predict', "
             f"{str(images[0])!r}, '--checkpoint', {str(checkpoint)!r}]; code = cli.main(); "
             "print('jax hidden' if sys.modules.get('jax', 0) is None else 'jax free'); "
             "sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "jax hidden"
    assert len(result.stdout.splitlines()) == 2, "the LaTeX line, then the probe's"
    pytest.importorskip("jax")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env={**env, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "jax free"


# --- batches with bad inputs, standard input, quiet start, usage errors ---------------------

def _cli(*args: str, stdin: bytes | None = None, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run the command line in a process of its own, as a user would (TensorFlow's log
    variables unset unless ``quiet`` is False, where they are left as the tests set them)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if quiet:
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    return subprocess.run([sys.executable, "-m", "img2latex_lib.cli", *args], input=stdin,
                          capture_output=True, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def mixed_batch(images, tmp_path_factory):
    """Five inputs in order: good, truncated, good, missing, blank (and the good ones' names)."""
    folder = tmp_path_factory.mktemp("mixed")
    truncated = folder / "cut.png"
    truncated.write_bytes(images[1].read_bytes()[:60])
    blank = folder / "blank.png"
    Image.new("L", (80, 30), 255).save(blank)
    paths = [images[0], truncated, images[2], folder / "gone.png", blank]
    return [str(p) for p in paths], [str(images[0]), str(images[2])]


def test_a_bad_image_in_a_batch_leaves_the_others_done_with_one_line_each(checkpoint,
                                                                            mixed_batch):
    paths, good = mixed_batch
    result = _cli("predict", *paths, "--checkpoint", str(checkpoint))
    assert result.returncode == 1
    rows = [line.split("\t") for line in result.stdout.decode().splitlines()]
    assert [row[0] for row in rows] == good, "every good image, in order"
    errors = result.stderr.decode().splitlines()
    assert len(errors) == 3, errors  # nothing else: no TensorFlow log line either
    bad = [paths[1], paths[3], paths[4]]
    for line, name, reason in zip(errors, bad, ("truncated", "not found", "blank"), strict=True):
        assert line.startswith(f"img2latex: {name}: ") and reason in line, line
    assert "Traceback" not in result.stderr.decode()


def test_json_output_gives_a_failed_image_an_error_field(checkpoint, mixed_batch, capsys):
    paths, good = mixed_batch
    assert main(["predict", *paths, "--checkpoint", str(checkpoint), "--format", "json"]) == 1
    records = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in records] == paths
    assert [("latex" in r, "error" in r) for r in records] == [
        (True, False), (False, True), (True, False), (False, True), (False, True)]
    assert "blank image" in records[4]["error"]


def test_render_goes_on_after_a_bad_image_and_names_figures_apart(checkpoint, images, tmp_path,
                                                                   capsys):
    for suffix in ("png", "jpg"):
        Image.open(images[1]).convert("RGB").save(tmp_path / f"x.{suffix}")
    (tmp_path / "bad.png").write_text("not a picture")
    paths = [tmp_path / "bad.png", tmp_path / "x.png", tmp_path / "x.jpg"]
    assert main(["predict", *map(str, paths), "--render", "--checkpoint", str(checkpoint)]) == 1
    captured = capsys.readouterr()
    figures = [line.split("\t")[2] for line in captured.out.splitlines()]
    assert figures == [str(tmp_path / "x.png.pred.png"), str(tmp_path / "x.jpg.pred.png")]
    assert all(Path(f).stat().st_size > 1000 for f in figures)
    assert captured.err.count("bad.png: not an image") == 1


def test_predict_reads_one_image_from_standard_input(checkpoint, images):
    data = images[2].read_bytes()
    from_file = _cli("predict", str(images[2]), "--checkpoint", str(checkpoint))
    from_pipe = _cli("predict", "-", "--checkpoint", str(checkpoint), stdin=data)
    assert from_pipe.returncode == 0 and from_pipe.stderr == b""
    assert from_pipe.stdout == from_file.stdout and from_pipe.stdout.strip()
    empty = _cli("predict", "-", "--checkpoint", str(checkpoint), stdin=b"")
    assert empty.returncode == 1 and b"<stdin>: empty input" in empty.stderr


def test_a_successful_command_is_quiet_and_verbose_shows_tensorflows_log(checkpoint, images):
    quiet = _cli("predict", str(images[0]), "--checkpoint", str(checkpoint))
    assert quiet.returncode == 0 and quiet.stderr == b"", quiet.stderr.decode()
    verbose = _cli("predict", str(images[0]), "--checkpoint", str(checkpoint), "--verbose")
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert b"oneDNN" in verbose.stderr or b"absl" in verbose.stderr, "TensorFlow's own lines"
    error = _cli("predict", str(images[0]), "--checkpoint", str(images[0].parent / "none"))
    assert error.returncode == 1 and len(error.stderr.decode().splitlines()) == 1


def test_help_does_not_import_keras():
    probe = ("import sys; from img2latex_lib import cli\n"
             "for argv in (['--help'], ['predict', '--help'], ['train', '--help']):\n"
             "    try:\n        cli.main(argv)\n    except SystemExit as done:\n"
             "        assert done.code == 0\n"
             "print(sorted({'keras', 'tensorflow', 'numpy'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "--beam" in result.stdout and "--embedding_dim" in result.stdout


@pytest.mark.parametrize("flags", [["--batch_size", "0"], ["--beam", "0"], ["--beam", "-3"],
                                   ["--temperature", "0"], ["--temperature", "-1"],
                                   ["--temperature", "nan"], ["--beam", "two"]])
def test_numbers_out_of_range_are_usage_errors_of_one_line(flags, images, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["predict", str(images[0]), *flags])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flags[0] in err[0] and "img2latex predict: error:" in err[0]


def test_render_errors_are_one_line(tmp_path):
    result = _cli("render", r"\frac{a}{", "-o", str(tmp_path / "f.png"))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("img2latex: error: ") and "brace" in lines[0]
    assert not (tmp_path / "f.png").exists()


def test_tsv_output_escapes_tabs_and_newlines_in_paths(checkpoint, images, tmp_path, capsys):
    odd = tmp_path / "a\tb\nc.png"
    odd.write_bytes(images[0].read_bytes())
    assert main(["predict", str(odd), str(images[1]), "--checkpoint", str(checkpoint)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "a\\tb\\nc.png") + "\t")


def test_tiny_and_squeezed_images_are_predicted_with_a_warning(checkpoint, tmp_path, capsys):
    tiny = Image.new("L", (5, 5), 255)
    tiny.putpixel((2, 2), 0)
    tiny.save(tmp_path / "tiny.png")
    strip = Image.new("L", (4000, 60), 255)
    strip.paste(0, (10, 20, 3990, 40))
    strip.save(tmp_path / "strip.png")
    assert main(["predict", str(tmp_path / "tiny.png"), str(tmp_path / "strip.png"),
                 "--checkpoint", str(checkpoint)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    warnings = captured.err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("img2latex: warning: ") for w in warnings)
    assert "tiny.png: the formula is only 1x1 pixels" in warnings[0]
    assert "strip.png" in warnings[1] and "so wide" in warnings[1]


def test_evaluate_leaves_out_an_unreadable_image_and_says_so(checkpoint, tmp_path, capsys):
    data = build_dataset(["a b", "c d", "e f"], default_renderer(), tmp_path / "data",
                         progress=False)
    data.samples[1].image.write_bytes(b"\x89PNG broken")
    assert main(["evaluate", str(tmp_path / "data"), "--checkpoint", str(checkpoint)]) == 1
    captured = capsys.readouterr()
    assert "2 samples of data (1 unreadable images left out)" in captured.out
    assert sum(data.samples[1].image.name in line for line in captured.err.splitlines()) == 1


def test_train_refuses_a_bad_hyperparameter_before_loading_anything(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "absent"), "--batch_size", "0",
                 "--save_dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["img2latex: error: --batch_size must be a positive integer, not 0"]
    assert not (tmp_path / "run").exists()
