"""The GPU recipe's dry run (benchmarks/gpu_recipe.py): pack, train under JAX with TensorFlow
hidden as on the GPU machine, export, and evaluate the result under TensorFlow."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_trains_under_jax_and_writes_a_model_card(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_recipe.py"),
                           "dry-run", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    model = tmp_path / "out" / "model"
    assert sorted(p.name for p in model.iterdir()) == [
        "MODEL_CARD.md", "config.json", "manifest.json", "model.weights.h5", "vocab.json"]
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["training"]["state"]["global_step"] == 2
    assert {"real", "styled"} <= set(manifest["packs"])
    card = (model / "MODEL_CARD.md").read_text()
    assert "from scratch" in card and "| system |" in card
    assert (tmp_path / "out" / "train.log").exists()


def test_training_flags_come_from_the_shipped_architecture(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_recipe

    args = gpu_recipe._arguments(["train", "--out", str(tmp_path), "--carry", "data/gpu"])
    manifest = {"packs": {"real": {"file": "real.pack", "repeat": 3},
                          "styled": {"file": "styled.pack", "repeat": 1}}}
    flags = gpu_recipe._train_flags(args, manifest, REPO / "runs" / "gpu")
    config = json.loads((REPO / "checkpoints" / "img2latex-base" / "config.json").read_text())
    assert flags[flags.index("--decoder_units") + 1] == str(config["decoder_units"])
    assert flags[flags.index("--data") + 1: flags.index("--data") + 3] == [
        "data/gpu/real.packx3", "data/gpu/styled.pack"]
    assert flags[flags.index("--save_dir") + 1] == "runs/gpu"
    warm = gpu_recipe._arguments(["train", "--out", str(tmp_path), "--init",
                                  str(REPO / "checkpoints" / "img2latex-base")])
    warm_flags = gpu_recipe._train_flags(warm, manifest, REPO / "runs" / "gpu")
    assert "--init" in warm_flags and "--decoder_units" not in warm_flags
