import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec

import numpy as np
import pytest

from img2latex_lib.model import Config, build_model, masked_accuracy, masked_loss

SMALL = dict(vocab_size=20, cnn_widths=(8, 16, 16), cnn_pools=(2, 2, 2), enc_out_dim=16,
             embedding_dim=8, decoder_units=16, attention_heads=2, attention_head_size=8,
             image_height=32, width_step=32)


def test_shapes_and_parameter_count(capsys):
    model = build_model(Config(**SMALL))
    assert "parameters, built in" in capsys.readouterr().out
    images = np.ones((3, 32, 96, 1), "float32")
    tokens = np.ones((3, 7), "int32")
    assert tuple(model((images, tokens)).shape) == (3, 7, 20)
    encoded = model.encoder(images)
    assert tuple(encoded.shape) == (3, (32 // 8) * (96 // 8), 16)


def test_config_round_trip_and_validation(tmp_path):
    config = Config(**SMALL)
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config
    with pytest.raises(ValueError, match="image_height must be a multiple of the CNN stride"):
        Config(**{**SMALL, "image_height": 36}).validate()
    (tmp_path / "bad.json").write_text('{"vocab_size": 3, "colour": 1}')
    with pytest.raises(ValueError, match="bad.json: unknown config keys: colour"):
        Config.load(tmp_path / "bad.json")


def test_masked_loss_ignores_padding():
    logits = np.log(np.array([[[0.7, 0.1, 0.2], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    targets = np.array([[2, 1, 0]])  # the last position is padding
    expected = -(np.log(0.2) + np.log(0.8)) / 2
    assert float(masked_loss()(targets, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(masked_accuracy(targets, logits)) == pytest.approx(0.5)
    smoothed = float(masked_loss(0.1)(targets, logits))
    uniform = -np.mean(np.log([[0.7, 0.1, 0.2], [0.1, 0.8, 0.1]]), axis=1).mean()
    assert smoothed == pytest.approx(0.9 * expected + 0.1 * uniform, rel=1e-5)


def randomized(weight, rng) -> np.ndarray:
    """Random values for a weight; batch-norm variances stay positive."""
    values = rng.normal(0, 0.3, tuple(weight.shape)).astype("float32")
    return np.abs(values) + 0.5 if "variance" in weight.path else values


BACKEND_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from img2latex_lib.model import Config, build_model
    from tests.test_model import SMALL, randomized
    mode, weights, out = sys.argv[1:4]
    model = build_model(Config(**SMALL), verbose=False)
    if mode == "save":
        rng = np.random.default_rng(0)
        model.set_weights([randomized(w, rng) for w in model.weights])
        model.save_weights(weights)
    else:
        model.load_weights(weights)
    rng = np.random.default_rng(1)
    images = rng.random((2, 32, 64, 1)).astype("float32")
    tokens = rng.integers(1, 20, (2, 5)).astype("int32")
    np.save(out, np.asarray(model((images, tokens), training=False)))
""")


@pytest.mark.skipif(find_spec("jax") is None, reason="JAX is not installed")
def test_weights_saved_under_tensorflow_give_same_logits_under_jax(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(BACKEND_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(backend, mode, out):
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": root}
        subprocess.run([sys.executable, str(script), mode, str(tmp_path / "w.weights.h5"),
                        str(tmp_path / out)], check=True, env=env, cwd=root)
        return np.load(tmp_path / out)

    tf_logits = run("tensorflow", "save", "tf.npy")
    jax_logits = run("jax", "load", "jax.npy")
    assert np.abs(tf_logits).max() > 0.1
    np.testing.assert_allclose(tf_logits, jax_logits, atol=1e-4)

