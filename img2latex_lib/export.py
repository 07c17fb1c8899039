"""ONNX export of a checkpoint: the encoder and one decoder step as two graphs, for ``runtime``.

The graphs are the Keras runtime's own compiled functions (``StepDecoder.memory`` and
``StepDecoder.step_tensors``) traced as ``tf.function``s with input signatures whose batch,
width and position dimensions are dynamic, and converted by tf2onnx. Why tf2onnx: it converts
a TensorFlow function of any signature (Keras' own ``model.export(format="onnx")`` writes a
model's ``call`` only, the teacher-forced one, and under the TensorFlow backend it calls tf2onnx
itself); it works with the pinned keras 3.15, TensorFlow 2.21, numpy 2.4 and protobuf 7; and the
GRUs' loops become ONNX ``Loop`` ops that ONNX Runtime runs to within 1e-5 of Keras. (onnxscript's
converter and ``torch.onnx`` need the PyTorch backend.) Every export is checked against Keras
on a sample before it is written.

``float16=True`` stores the weights as float16 (half the files) with a ``Cast`` to float32
after each, so the graphs still compute in float32 and run on any ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .runtime import (
    ENCODER_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    STEP_FILE,
    STEP_OUTPUTS,
    VOCAB_FILE,
    ExportError,
    OnnxStepDecoder,
)
from .tokenizer import SOS_ID

OPSET = 17
#: Largest difference from Keras (log-probabilities, state, attention) an export may show.
TOLERANCE = {False: 1e-3, True: 5e-2}
#: The symbolic dimensions of each graph's inputs and outputs (numbers: fixed sizes).
BATCH, WIDTH, POSITIONS = "batch", "width", "positions"


def export_onnx(checkpoint: str | Path, out: str | Path, float16: bool = False) -> Path:
    """Write the ONNX export of a Keras checkpoint to the folder ``out`` (replacing an earlier
    export there) and return it; checked against Keras first (an ExportError if it differs)."""
    import tensorflow as tf
    from keras import ops

    from .checkpoints import existing_checkpoint, load_from_checkpoint
    from .decoding import StepDecoder

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise ExportError(f"{out}: folder exists and holds something else than an ONNX "
                          "export; choose a new or empty folder")
    if out.resolve() == existing_checkpoint(Path(checkpoint)).resolve():
        raise ExportError(f"{out}: export to another folder than the checkpoint's")
    model, vocab, config = load_from_checkpoint(checkpoint)
    # A step feeds the GRU one token: unrolled, it has no ONNX Loop (which cost as much as the
    # rest of the step); the same weights and arithmetic.
    model.decoder.gru.unroll = True
    decoder = StepDecoder(model)
    sample = np.random.default_rng(0).random(
        (2, config.image_height, 4 * config.width_step, 1)).astype(np.float32)
    memory = decoder.memory(sample)
    parts = [f"memory_{i}" for i in range(len(memory))]
    memory_specs = [tf.TensorSpec([None, None, *part.shape[2:]], part.dtype, name=name)
                    for name, part in zip(parts, memory, strict=True)]

    def encoder(images):
        return dict(zip(parts, decoder.memory(images), strict=True))

    def step(tokens, state, *memory):
        log_probs, state, attention = decoder.step_tensors(tokens, state, tuple(memory))
        return dict(zip(STEP_OUTPUTS, (log_probs, state, attention), strict=True))

    units = config.decoder_units
    graphs = {
        ENCODER_FILE: _convert(encoder, [tf.TensorSpec([None, config.image_height, None, 1],
                                                       tf.float32, name="images")]),
        STEP_FILE: _convert(step, [tf.TensorSpec([None], tf.int32, name="tokens"),
                                   tf.TensorSpec([None, units], tf.float32, name="state"),
                                   *memory_specs]),
    }
    memory_dims = [BATCH, POSITIONS, *memory[0].shape[2:]]
    _name_dims(graphs[ENCODER_FILE], {"images": [BATCH, config.image_height, WIDTH, 1],
                                      **{name: memory_dims for name in parts}})
    _name_dims(graphs[STEP_FILE], {"tokens": [BATCH], "state": [BATCH, units],
                                   "new_state": [BATCH, units],
                                   "log_probs": [BATCH, config.vocab_size],
                                   "attention": [BATCH, POSITIONS],
                                   **{name: memory_dims for name in parts}})
    if float16:
        graphs = {name: _float16_weights(graph) for name, graph in graphs.items()}
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "float16_weights": float16,
        "encoder": {"file": ENCODER_FILE, **_signature(graphs[ENCODER_FILE])},
        "decoder_step": {"file": STEP_FILE, **_signature(graphs[STEP_FILE])},
        "memory": parts,
        "input_height": config.image_height, "max_width": config.max_width,
        "width_step": config.width_step, "max_len": config.max_len,
        "state_size": units, "vocab_size": config.vocab_size,
        "config": json.loads(config.to_json()),
    }
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name, graph in graphs.items():
            (staging / name).write_bytes(graph.SerializeToString())
        vocab.save(staging / VOCAB_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        _check(OnnxStepDecoder(staging), decoder, sample, ops, TOLERANCE[float16])
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _convert(fn, signature):
    """The ONNX graph (a ModelProto) of a tensor function with this input signature."""
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs the converter: pip install 'img2latex[onnx]' "
                          "(onnx and tf2onnx)") from None

    graph, _ = tf2onnx.convert.from_function(tf.function(fn), input_signature=signature,
                                             opset=OPSET)
    return graph


def _name_dims(graph, dims: dict[str, list]) -> None:
    """Give the graph's inputs and outputs readable dimension names (``batch``, ``width``…)."""
    for value in [*graph.graph.input, *graph.graph.output]:
        for dim, name in zip(value.type.tensor_type.shape.dim, dims[value.name], strict=True):
            if isinstance(name, str):
                dim.dim_param = name


def _signature(graph) -> dict[str, list[dict]]:
    """``inputs`` and ``outputs`` of a graph as ``model.json`` lists them: name, shape, dtype."""
    import onnx

    def described(value) -> dict:
        tensor = value.type.tensor_type
        return {"name": value.name,
                "shape": [d.dim_param or d.dim_value for d in tensor.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name}

    return {"inputs": [described(v) for v in graph.graph.input],
            "outputs": [described(v) for v in graph.graph.output]}


def _float16_weights(graph):
    """The graph with its float32 weights stored as float16, each cast back to float32 where
    it is used (compute stays float32)."""
    import onnx
    from onnx import numpy_helper

    casts, kept = [], []
    for weight in graph.graph.initializer:
        values = numpy_helper.to_array(weight)
        if values.dtype != np.float32 or values.size < 16:
            kept.append(weight)
            continue
        stored = f"{weight.name}__float16"
        kept.append(numpy_helper.from_array(values.astype(np.float16), stored))
        casts.append(onnx.helper.make_node("Cast", [stored], [weight.name],
                                           to=onnx.TensorProto.FLOAT))
    graph.graph.ClearField("initializer")
    graph.graph.initializer.extend(kept)
    nodes = [*casts, *graph.graph.node]
    graph.graph.ClearField("node")
    graph.graph.node.extend(nodes)
    return graph


def _check(exported: OnnxStepDecoder, keras_decoder, images: np.ndarray, ops,
           tolerance: float) -> None:
    """Raise an ExportError unless the export's first two steps match Keras on ``images``."""
    memory, onnx_memory = keras_decoder.memory(images), exported.encode(images)
    state, onnx_state = keras_decoder.initial_state(len(images)), exported.initial_state(
        len(images))
    tokens = np.full(len(images), SOS_ID, dtype=np.int32)
    worst = 0.0
    for _ in range(2):
        ours = keras_decoder.step_tensors(ops.convert_to_tensor(tokens), state, memory)
        theirs = exported.step(tokens, onnx_state, onnx_memory)
        worst = max(worst, *(float(np.abs(ops.convert_to_numpy(a) - b).max())
                             for a, b in zip(ours, theirs, strict=True)))
        state, onnx_state = ours[1], theirs[1]
        tokens = theirs[0].argmax(-1).astype(np.int32)
    if not worst <= tolerance:
        raise ExportError(f"the ONNX graphs differ from the Keras model by {worst:.2g} (more "
                          f"than {tolerance}); the converter mistranslated an op")
