"""The ONNX export and the ONNX Runtime producer, held to the Keras model's outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from img2latex_lib.cli import main
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.export import export_onnx
from img2latex_lib.formats import compact
from img2latex_lib.render import LatexRenderer, latex_available
from img2latex_lib.runtime import (
    ENCODER_FILE,
    MANIFEST_FILE,
    STEP_FILE,
    ExportError,
    OnnxProducer,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "img2latex-fast"
FORMULAS = [
    r"x ^ { 2 } + y ^ { 2 } = 1", r"\frac { a } { b }", r"\sum _ { i = 1 } ^ { n } i",
    r"\alpha + \beta = \gamma", r"e ^ { i \pi } + 1 = 0", r"\int _ { 0 } ^ { 1 } f ( x ) d x",
    r"\sqrt { x + 1 }", r"a _ { n + 1 } = a _ { n } + d", r"\left( \frac { 1 } { 2 } \right)",
    r"f ( x ) = \sin x \cos x", r"\lim _ { x \to 0 } \frac { \sin x } { x } = 1",
    r"\mathbf { v } \cdot \mathbf { w }",
]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_onnx(CHECKPOINT, tmp_path_factory.mktemp("onnx") / "fast")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    if not latex_available():
        pytest.skip("pdflatex or gs not installed")
    folder = tmp_path_factory.mktemp("formulas")
    paths = []
    for k, result in enumerate(LatexRenderer(workers=1).render_batch(FORMULAS)):
        paths.append(folder / f"{k:02d}.png")
        result.image.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def keras_producer() -> LatexProducer:
    return LatexProducer(CHECKPOINT)


def test_export_writes_two_graphs_that_onnxruntime_loads(exported):
    import onnxruntime as ort

    manifest = json.loads((exported / MANIFEST_FILE).read_text())
    assert manifest["input_height"] == 48 and manifest["width_step"] == 32
    encoder = ort.InferenceSession(str(exported / ENCODER_FILE))
    step = ort.InferenceSession(str(exported / STEP_FILE))
    assert [i.name for i in encoder.get_inputs()] == ["images"]
    assert encoder.get_inputs()[0].shape == ["batch", 48, "width", 1]
    assert {o.name for o in step.get_outputs()} == {"log_probs", "new_state", "attention"}
    images = np.ones((3, 48, 96, 1), np.float32)  # a batch and a width not seen in the export
    memory = encoder.run(manifest["memory"], {"images": images})
    log_probs, state, attention = step.run(
        ["log_probs", "new_state", "attention"],
        {"tokens": np.ones(3, np.int32), "state": np.zeros((3, manifest["state_size"]),
                                                           np.float32),
         **dict(zip(manifest["memory"], memory, strict=True))})
    assert log_probs.shape == (3, manifest["vocab_size"])
    assert np.allclose(np.exp(log_probs).sum(-1), 1, atol=1e-4)
    assert attention.shape == (3, memory[0].shape[1])


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 3])
def test_onnx_runtime_decodes_as_keras_does(exported, pictures, keras_producer, beam):
    onnx = OnnxProducer(exported).predict([str(p) for p in pictures], beam_size=beam)
    reference = keras_producer.predict([str(p) for p in pictures], beam_size=beam)
    agreement = np.mean([a == b for a, b in zip(onnx, reference, strict=True)])
    print(f"beam {beam}: ONNX Runtime and Keras agree on {agreement:.0%} of {len(pictures)}")
    assert agreement >= 0.9


def test_float16_weights_halve_the_files_and_keep_the_output(exported, pictures, tmp_path):
    half = export_onnx(CHECKPOINT, tmp_path / "half", float16=True)
    size = sum((half / f).stat().st_size for f in (ENCODER_FILE, STEP_FILE))
    full = sum((exported / f).stat().st_size for f in (ENCODER_FILE, STEP_FILE))
    assert size < 0.6 * full
    images = [str(p) for p in pictures]
    agreement = np.mean([a == b for a, b in zip(OnnxProducer(half).predict(images),
                                                 OnnxProducer(exported).predict(images),
                                                 strict=True)])
    print(f"float16 weights: greedy agrees with float32 on {agreement:.0%}")
    assert agreement >= 0.9


def test_runtime_imports_neither_tensorflow_nor_keras(exported, pictures):
    probe = ("import sys\n"
             "from img2latex_lib.runtime import OnnxProducer\n"
             "import img2latex_lib.cli\n"
             f"print(OnnxProducer({str(exported)!r}).predict({str(pictures[0])!r}))\n"
             "print(sorted({'tensorflow', 'keras', 'jax'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env=ENV, check=True)
    latex, modules = result.stdout.strip().splitlines()
    assert latex and modules == "[]"


def test_cli_predict_with_onnx_runtime_end_to_end(exported, pictures, tmp_path):
    missing = tmp_path / "missing.png"
    argv = ["predict", "--runtime", "onnx", "--checkpoint", str(exported), str(pictures[0]),
            str(missing), str(pictures[1])]
    probe = ("import sys\nfrom img2latex_lib.cli import main\n"
             f"code = main({argv!r})\n"
             "sys.exit(99 if 'tensorflow' in sys.modules else code)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env=ENV)
    assert result.returncode == 1, result.stderr  # one input failed; 99: TensorFlow came in
    assert result.stderr.strip().splitlines() == [f"img2latex: {missing}: file not found"]
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [row[0] for row in rows] == [str(pictures[0]), str(pictures[1])]
    assert all(row[1] for row in rows)


def test_cli_onnx_runtime_prints_every_output_form(exported, pictures, keras_producer, capsys):
    image = str(pictures[2])
    base = ["predict", image, "--runtime", "onnx", "--checkpoint", str(exported)]
    tokens = keras_producer.predict(image)
    assert main([*base, "--tokens"]) == 0
    assert capsys.readouterr().out.strip() == tokens
    assert main(base) == 0
    assert capsys.readouterr().out.strip() == compact(tokens)
    assert main([*base, "--format", "json", "--beam", "2"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["image"] == image and record["latex"] and record["tokens"]
    assert main([*base, "--format", "mathml"]) == 0
    assert capsys.readouterr().out.startswith("<math")


@pytest.mark.parametrize("case", ["keras checkpoint", "no folder", "corrupt graph",
                                  "no checkpoint"])
def test_cli_onnx_runtime_errors_are_one_line(exported, pictures, tmp_path, capsys, case):
    folder = {"keras checkpoint": CHECKPOINT, "no folder": tmp_path / "none",
              "corrupt graph": tmp_path / "corrupt", "no checkpoint": None}[case]
    if case == "corrupt graph":
        folder.mkdir()
        for path in exported.iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
        (folder / STEP_FILE).write_bytes(b"not a graph")
    argv = ["predict", str(pictures[0]), "--runtime", "onnx"]
    assert main(argv + (["--checkpoint", str(folder)] if folder else [])) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("img2latex: error: ")


def test_export_refuses_a_folder_holding_something_else(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="choose a new or empty folder"):
        export_onnx(CHECKPOINT, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
