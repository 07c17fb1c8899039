"""Config: importable without Keras, and each bad value refused in one line naming its field."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from img2latex_lib.config import INPUT_HEIGHT, Config

ROOT = Path(__file__).resolve().parents[1]


def test_importing_config_loads_neither_keras_nor_tensorflow():
    script = ("import sys, img2latex_lib.config\n"
              "print(sorted(m for m in ('keras', 'tensorflow', 'numpy', 'PIL') "
              "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_config_keeps_its_old_home_and_preprocess_agrees_on_the_input_height():
    from img2latex_lib import config, model, preprocess

    assert model.Config is config.Config and model.ARCHITECTURE is config.ARCHITECTURE
    assert preprocess.INPUT_HEIGHT == INPUT_HEIGHT == Config().image_height


def test_defaults_and_small_valid_values_pass():
    Config().validate()
    Config(vocab_size=20, cnn_widths=(8,), cnn_pools=(1,), image_height=7, width_step=3,
           lr=1, dropout=0, max_steps=0, min_lr_ratio=1, seed=0).validate()


BAD_VALUES = {
    "a string for an int": ({"embedding_dim": "eighty"},
                            "embedding_dim must be a positive integer, not 'eighty'"),
    "a zero width step": ({"width_step": 0}, "width_step must be a positive integer, not 0"),
    "a negative width": ({"max_width": -5}, "max_width must be a positive integer, not -5"),
    "a bool for an int": ({"decoder_units": True},
                          "decoder_units must be a positive integer, not True"),
    "a float for an int": ({"batch_size": 2.5}, "batch_size must be a positive integer, not 2.5"),
    "a zero batch size": ({"batch_size": 0}, "batch_size must be a positive integer, not 0"),
    "a dropout of 2": ({"dropout": 2}, "dropout must be a number in [0, 1), not 2"),
    "a NaN learning rate": ({"lr": float("nan")}, "lr must be a positive number, not nan"),
    "a negative step count": ({"max_steps": -1},
                              "max_steps must be a non-negative integer, not -1"),
    "a string in a list": ({"cnn_widths": (16, "x")},
                           "cnn_widths must be a non-empty list of positive integers, "
                           "not [16, 'x']"),
    "an empty list": ({"cnn_pools": ()},
                      "cnn_pools must be a non-empty list of positive integers, not []"),
    "lists of two lengths": ({"cnn_pools": (2, 2, 2, 1)},
                             "cnn_widths and cnn_pools must have the same length (one pooling "
                             "per CNN block), not 5 and 4"),
    "a height off the stride": ({"image_height": 36},
                                "image_height must be a multiple of the CNN stride 8 (the "
                                "product of cnn_pools), not 36"),
    "too few rows": ({"max_rows": 4}, "max_rows must be at least the 6 feature rows "
                     "(image_height / CNN stride), not 4"),
    "an odd encoder size": ({"enc_out_dim": 15},
                            "enc_out_dim must be even (two GRU directions), not 15"),
    "an empty save folder": ({"save_dir": ""}, "save_dir must be a non-empty string, not ''"),
    "a list for extra": ({"extra": [1]}, "extra must be a JSON object, not [1]"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_field(case):
    changes, message = BAD_VALUES[case]
    with pytest.raises(ValueError) as error:
        Config(**changes).validate()
    assert str(error.value) == message


def test_loading_names_the_file_and_rejects_what_json_allows_but_a_config_cannot_be(tmp_path):
    path = tmp_path / "config.json"
    for text, message in [
        ("[1, 2]", "expected a JSON object of config fields, not a list"),
        ('{"embeding_dim": 8, "colour": 1}',
         "unknown config keys: colour, embeding_dim (did you mean embedding_dim?)"),
        ('{"cnn_widths": [16, "x"], "cnn_pools": [2, 2]}',
         "cnn_widths must be a non-empty list of positive integers, not [16, 'x']"),
        ('{"extra": []}', "extra must be a JSON object, not []"),
        ("{", "not valid JSON (Expecting property name enclosed in double quotes: line 1 "
              "column 2 (char 1))"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError) as error:
            Config.load(path)
        assert str(error.value) == f"{path}: {message}", text
    config = Config(vocab_size=20, cnn_widths=(8, 16), cnn_pools=(2, 2), image_height=32)
    config.save(path)
    assert json.loads(path.read_text())["cnn_widths"] == [8, 16]
    assert Config.load(path) == config  # lists back to tuples
