import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from img2latex_lib.batching import BucketedDataset
from img2latex_lib.checkpoints import CheckpointError, load_from_checkpoint, save_checkpoint
from img2latex_lib.datasets import build_dataset
from img2latex_lib.decoding import LatexProducer
from img2latex_lib.model import Config, build_model
from img2latex_lib.render import default_renderer
from img2latex_lib.tokenizer import Vocab
from img2latex_lib.training import StepLog, Trainer, global_step
from tests.test_model import SMALL

ROOT = Path(__file__).resolve().parents[1]
FORMULAS = ["x ^ { 2 } + 1", r"\frac { a } { b }", r"\alpha _ { i } = 0", "y - 3",
            r"\sqrt { z }", "a + b = c", r"\beta ^ { 2 }", "( x + y )"]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return folder, build_dataset(FORMULAS, default_renderer(), folder, progress=False)


def test_tiny_model_learns_to_reproduce_a_formula(small_dataset, tmp_path):
    _, dataset = small_dataset
    image, formula = dataset.images[0], dataset.formulas[0]
    vocab = Vocab.build(FORMULAS)
    config = Config(**{**SMALL, "vocab_size": len(vocab), "decoder_units": 32, "dropout": 0.0,
                       "lr": 3e-3, "warmup_steps": 5, "num_epochs": 60, "batch_size": 8,
                       "checkpoint_every": 0, "save_dir": str(tmp_path / "run")})
    data = BucketedDataset([image] * 8, [formula] * 8, vocab, batch_size=8,
                           height=config.image_height, width_step=config.width_step)
    Trainer(config, vocab, data).fit(verbose=0)
    producer = LatexProducer(tmp_path / "run" / "last")
    assert producer.predict(str(image)) == formula
    header, row = (tmp_path / "run" / "steps.csv").read_text().splitlines()  # every 50 steps
    fields = dict(zip(header.split(","), row.split(","), strict=True))
    assert fields["global_step"] == "50" and fields["epoch"] == "49"
    assert 0 < float(fields["lr"]) < config.lr and float(fields["loss"]) < 1.0
    assert producer.predict(str(image), beam_size=3) == formula


def test_max_steps_ends_training_and_the_learning_rate_decay_with_it(small_dataset, tmp_path):
    _, dataset = small_dataset
    vocab = Vocab.build(FORMULAS)
    config = Config(**{**SMALL, "vocab_size": len(vocab), "lr": 1e-2, "warmup_steps": 1,
                       "max_steps": 4, "num_epochs": 50, "batch_size": 2, "checkpoint_every": 0,
                       "save_dir": str(tmp_path / "run")})
    data = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=2,
                           height=config.image_height, width_step=config.width_step)
    trainer = Trainer(config, vocab, data)
    trainer.fit(verbose=0)
    assert global_step(trainer.model) == 4
    assert (tmp_path / "run" / "steps.csv").read_text() == ",".join(StepLog.FIELDS) + "\n"
    final_lr = float(np.asarray(trainer.model.optimizer.learning_rate))
    assert final_lr == pytest.approx(config.lr * config.min_lr_ratio, rel=1e-3)


def test_a_time_budget_ends_training_and_the_learning_rate_decays_over_it(small_dataset,
                                                                         tmp_path):
    _, dataset = small_dataset
    vocab = Vocab.build(FORMULAS)
    config = Config(**{**SMALL, "vocab_size": len(vocab), "lr": 1e-2, "warmup_steps": 1,
                       "max_minutes": 0.15, "num_epochs": 10_000, "batch_size": 2,
                       "checkpoint_every": 0, "save_dir": str(tmp_path / "run")})
    data = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=2,
                           height=config.image_height, width_step=config.width_step)
    trainer = Trainer(config, vocab, data)
    trainer.fit(verbose=0, max_steps=1)  # compiles the training step: not part of the test
    start = time.monotonic()
    trainer.fit(verbose=0)  # each fit has its own budget
    elapsed = time.monotonic() - start
    steps = global_step(trainer.model)
    assert 9 <= elapsed < 9 + 5 and 3 < steps < config.num_epochs * len(data)
    final_lr = float(np.asarray(trainer.model.optimizer.learning_rate))
    assert config.lr * config.min_lr_ratio <= final_lr < 0.1 * config.lr  # decayed by the end
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert state["global_step"] == steps


def test_export_keeps_the_model_and_drops_the_optimizer(small_dataset, tmp_path):
    from img2latex_lib.cli import main

    folder, dataset = small_dataset
    vocab = Vocab.build(FORMULAS)
    config = Config(**{**SMALL, "vocab_size": len(vocab), "max_steps": 2, "batch_size": 2,
                       "checkpoint_every": 0, "save_dir": str(tmp_path / "run")})
    data = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=2,
                           height=config.image_height, width_step=config.width_step)
    Trainer(config, vocab, data).fit(verbose=0)
    trained, shipped = tmp_path / "run" / "last", tmp_path / "shipped"
    assert main(["export", str(trained), str(shipped)]) == 0
    assert sorted(p.name for p in shipped.iterdir()) == ["config.json", "model.weights.h5",
                                                         "vocab.json"]
    size = (shipped / "model.weights.h5").stat().st_size
    assert size < 0.6 * (trained / "model.weights.h5").stat().st_size  # no Adam moments
    images = [str(image) for image in dataset.images[:3]]
    assert LatexProducer(shipped).predict(images) == LatexProducer(trained).predict(images)
    assert main(["export", str(trained), str(trained)]) == 1


def test_export_average_is_the_weighted_mean_of_two_checkpoints(tmp_path, capsys):
    from img2latex_lib.cli import main

    vocab = Vocab.build(FORMULAS)
    config = Config(**{**SMALL, "vocab_size": len(vocab)})
    first = save_checkpoint(tmp_path / "first", build_model(config, verbose=False), vocab)
    keras.utils.set_random_seed(1)
    second = save_checkpoint(tmp_path / "second", build_model(config, verbose=False), vocab)
    a, b = (load_from_checkpoint(c)[0].get_weights() for c in (first, second))
    assert any(not np.allclose(x, y) for x, y in zip(a, b, strict=True))

    out = tmp_path / "soup"
    assert main(["export", str(first), str(out), "--average", str(second), "--weight",
                 "0.25"]) == 0
    for mixed, x, y in zip(load_from_checkpoint(out)[0].get_weights(), a, b, strict=True):
        np.testing.assert_allclose(mixed, 0.75 * x + 0.25 * y, rtol=1e-5, atol=1e-6)

    other = Vocab.build(["p q r"])
    wider = save_checkpoint(tmp_path / "other", build_model(
        Config(**{**SMALL, "vocab_size": len(other)}), verbose=False), other)
    capsys.readouterr()
    assert main(["export", str(first), str(tmp_path / "x"), "--average", str(wider)]) == 1
    assert "vocabulary differs" in capsys.readouterr().err
    assert main(["export", str(first), str(tmp_path / "y"), "--average", str(second),
                 "--weight", "1.5"]) == 1
    assert main(["export", str(first), str(first), "--average", str(second)]) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_load_from_checkpoint_explains_what_is_wrong(tmp_path):
    vocab = Vocab.build(["a b c d e f g h i j k l m n o p"])
    model = build_model(Config(**SMALL), verbose=False)
    good = save_checkpoint(tmp_path / "good", model, vocab)
    load_from_checkpoint(good)

    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_from_checkpoint(tmp_path / "nowhere")
    missing = save_checkpoint(tmp_path / "missing", model, vocab)
    (missing / "vocab.json").unlink()
    with pytest.raises(CheckpointError, match="missing vocab.json"):
        load_from_checkpoint(missing)
    mismatch = save_checkpoint(tmp_path / "mismatch", model, Vocab.build(["a b c"]))
    with pytest.raises(CheckpointError, match="vocab.json has 7 tokens but config.json says"):
        load_from_checkpoint(mismatch)
    corrupt = save_checkpoint(tmp_path / "corrupt", model, vocab)
    data = (corrupt / "model.weights.h5").read_bytes()
    (corrupt / "model.weights.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="weights are corrupt or do not match"):
        load_from_checkpoint(corrupt)
    other = build_model(Config(**{**SMALL, "decoder_units": 24}), verbose=False)
    wrong_shape = save_checkpoint(tmp_path / "wrong", other, vocab)
    Config(**SMALL).save(wrong_shape / "config.json")
    with pytest.raises(CheckpointError, match="weights are corrupt or do not match"):
        load_from_checkpoint(wrong_shape)


FAST = ROOT / "checkpoints" / "img2latex-fast"


def broken_checkpoint(folder: Path, change: dict | list) -> Path:
    """A copy of the shipped small checkpoint whose config.json has the fields in ``change``
    set (a list: is that list)."""
    shutil.copytree(FAST, folder)
    values = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(
        {**values, **change} if isinstance(change, dict) else change))
    return folder


BROKEN_CONFIGS = {
    "a string for an int": ({"embedding_dim": "eighty"},
                            "embedding_dim must be a positive integer, not 'eighty'"),
    "a zero width step": ({"width_step": 0}, "width_step must be a positive integer, not 0"),
    "a negative width": ({"max_width": -5}, "max_width must be a positive integer, not -5"),
    "a bool for an int": ({"decoder_units": True},
                          "decoder_units must be a positive integer, not True"),
    "a dropout of 2": ({"dropout": 2}, "dropout must be a number in [0, 1), not 2"),
    "a string in a list": ({"cnn_widths": [16, "x", 64, 64, 128]},
                           "cnn_widths must be a non-empty list of positive integers, "
                           "not [16, 'x', 64, 64, 128]"),
    "lists of two lengths": ({"cnn_pools": [2, 2, 2, 1]},
                             "cnn_widths and cnn_pools must have the same length (one pooling "
                             "per CNN block), not 5 and 4"),
    "a list": ([1, 2], "expected a JSON object of config fields, not a list"),
    "an unknown key": ({"colour": 1}, "unknown config keys: colour"),
}


@pytest.mark.parametrize("case", BROKEN_CONFIGS)
def test_a_broken_config_json_is_one_line_naming_the_file_and_the_field(tmp_path, case):
    change, message = BROKEN_CONFIGS[case]
    folder = broken_checkpoint(tmp_path / "x", change)
    with pytest.raises(CheckpointError) as error:
        load_from_checkpoint(folder)
    assert str(error.value) == f"{folder / 'config.json'}: {message}"


def _tiny_trainer(dataset, save_dir: Path, vocab: Vocab | None = None,
                  init_weights: Path | None = None, **changes) -> Trainer:
    vocab = vocab or Vocab.build(dataset.formulas)
    config = Config(**{**SMALL, "batch_size": 2, "num_epochs": 1, "checkpoint_every": 0,
                       "save_dir": str(save_dir), **changes})
    data = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=2, height=32)
    return Trainer(config, vocab, data, init_weights=init_weights)


def test_resume_with_another_architecture_or_vocabulary_says_what_differs(small_dataset,
                                                                         tmp_path):
    _, dataset = small_dataset
    run = tmp_path / "run"
    trainer = _tiny_trainer(dataset, run)
    trainer.fit(max_steps=1, verbose=0)
    last = run / "last"
    with pytest.raises(CheckpointError) as error:
        _tiny_trainer(dataset, run, embedding_dim=12, decoder_units=24).fit(resume=True,
                                                                            verbose=0)
    assert str(error.value) == (
        f"{last / 'config.json'}: the checkpoint has embedding_dim=8, decoder_units=16 but this "
        f"run has embedding_dim=12, decoder_units=24; resume with the settings it was trained "
        f"with, or drop --resume to start a fresh run")
    assert Config.load(run / "config.json").embedding_dim == 8  # the refused run wrote nothing
    tokens = trainer.vocab.id_to_token
    reordered = Vocab([*tokens[:4], *reversed(tokens[4:])])
    with pytest.raises(CheckpointError) as error:
        _tiny_trainer(dataset, run, vocab=reordered).fit(resume=True, verbose=0)
    assert str(error.value) == (f"{last / 'vocab.json'}: the checkpoint's vocabulary differs "
                                f"from this run's; resume with --vocab {last / 'vocab.json'}")
    with pytest.raises(CheckpointError) as error:
        _tiny_trainer(dataset, tmp_path / "other", embedding_dim=12,
                      init_weights=last / "model.weights.h5")
    assert str(error.value).startswith(f"{last / 'model.weights.h5'}: weights are corrupt or do "
                                       f"not match this run's config (")
    (last / "state.json").write_text('{"epoch": 0}')
    with pytest.raises(CheckpointError) as error:
        trainer.restore(last)
    assert str(error.value) == (f"{last / 'state.json'}: step_in_epoch must be a non-negative "
                                f"integer, not None")


def test_resume_without_a_checkpoint_says_so_instead_of_starting_afresh(small_dataset,
                                                                        tmp_path):
    _, dataset = small_dataset
    run = tmp_path / "run"
    trainer = _tiny_trainer(dataset, run)
    with pytest.raises(CheckpointError) as error:
        trainer.fit(resume=True, verbose=0)
    assert str(error.value) == (f"{run / 'last'}: no checkpoint to resume from; drop --resume "
                                f"to start a fresh run")
    assert not (run / "last").exists()
    trainer.fit(max_steps=1, verbose=0)
    (run / "last").rename(run / ".last.old")  # a save killed between its two renames
    trainer.fit(resume=True, verbose=0)
    assert json.loads((run / "last" / "state.json").read_text())["global_step"] == len(
        trainer.train_data)


def test_a_save_or_a_resume_removes_what_killed_saves_left(small_dataset, tmp_path):
    _, dataset = small_dataset
    run = tmp_path / "run"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()

    def leftover(pid: int) -> Path:
        folder = run / f".last.tmp-{pid}"
        folder.mkdir(parents=True)
        (folder / "model.weights.h5").write_bytes(b"half written")
        return folder

    stale, live = leftover(ended.pid), leftover(os.getppid())  # a live process's save is kept
    trainer = _tiny_trainer(dataset, run)
    trainer.fit(max_steps=1, verbose=0)
    assert not stale.exists() and live.exists()
    stale = leftover(ended.pid)
    trainer.restore(run / "last")  # what a resume does first
    assert not stale.exists()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [live.name]


def _train_command(data: Path, save_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "img2latex_lib.cli", "train", "--data", str(data),
            "--save_dir", str(save_dir), "--cnn_widths", "8,16,16", "--cnn_pools", "2,2,2",
            "--enc_out_dim", "16", "--embedding_dim", "8", "--decoder_units", "16",
            "--attention_heads", "2", "--attention_head_size", "8", "--image_height", "32",
            "--batch_size", "2", "--num_epochs", "40", "--checkpoint_every", "3",
            "--min_freq", "1", *extra]


def _state(save_dir: Path) -> dict | None:
    try:
        return json.loads((save_dir / "last" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def test_killed_run_resumes_from_its_last_checkpoint(small_dataset, tmp_path):
    data, dataset = small_dataset
    save_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(_train_command(data, save_dir), cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (_state(save_dir) or {}).get("global_step", 0) < 9:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = _state(save_dir)
    assert saved and saved["global_step"] >= 9, "no checkpoint was written before the kill"
    load_from_checkpoint(save_dir / "last")  # not corrupt

    steps_per_epoch = len(dataset) // 2
    target_epochs = saved["epoch"] + 2  # the killed run may have got far on a fast machine
    resumed = subprocess.run(
        _train_command(data, save_dir, "--resume", "--num_epochs", str(target_epochs)),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"step {saved['global_step']}" in resumed.stdout
    final = _state(save_dir)
    assert final["global_step"] == target_epochs * steps_per_epoch
    assert final["epoch"] == target_epochs and final["step_in_epoch"] == 0


DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from img2latex_lib.batching import BucketedDataset
    from img2latex_lib.datasets import load
    from img2latex_lib.model import Config
    from img2latex_lib.tokenizer import Vocab
    from img2latex_lib.training import Trainer
    from tests.test_model import SMALL
    dataset = load(sys.argv[1])
    vocab = Vocab.build(dataset.formulas)
    config = Config(**{**SMALL, "batch_size": 4, "num_epochs": 1, "checkpoint_every": 0,
                       "save_dir": sys.argv[2]})
    data = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=4, height=32)
    trainer = Trainer(config, vocab, data, distribute=True)
    history = trainer.fit(max_steps=2, verbose=0)
    print("replicas", trainer.replicas, "loss", history.history["loss"][-1])
""")


def test_distributed_training_on_two_logical_cpus(small_dataset, tmp_path):
    data, _ = small_dataset
    script = tmp_path / "distributed.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(data), str(tmp_path / "run")],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.strip().splitlines()[-1].split()
    assert line[:2] == ["replicas", "2"]
    assert np.isfinite(float(line[3]))


def test_a_run_stopped_inside_an_epoch_resumes_inside_it(small_dataset, tmp_path):
    _, dataset = small_dataset
    vocab = Vocab.build(dataset.formulas)

    def trainer() -> Trainer:
        config = Config(**{**SMALL, "vocab_size": len(vocab), "batch_size": 2, "num_epochs": 1,
                           "checkpoint_every": 0, "save_dir": str(tmp_path / "run")})
        data = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=2, height=32)
        return Trainer(config, vocab, data)

    first = trainer()
    first.fit(max_steps=3, verbose=0)
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 3, 3)
    first.fit(resume=True, verbose=0)  # a second fit on the same trainer runs too
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 0, 4)


def test_a_run_killed_after_the_last_batchs_save_does_not_redo_that_epoch(small_dataset,
                                                                           tmp_path):
    _, dataset = small_dataset
    vocab = Vocab.build(dataset.formulas)
    config = Config(**{**SMALL, "vocab_size": len(vocab), "batch_size": 2, "num_epochs": 1,
                       "checkpoint_every": 0, "save_dir": str(tmp_path / "run")})
    data = BucketedDataset(dataset.images, dataset.formulas, vocab, batch_size=2, height=32)
    trainer = Trainer(config, vocab, data)
    trainer.fit(verbose=0)
    # what a periodic save on the epoch's last batch leaves when the run dies before the
    # epoch's own save
    trainer.save("last", epoch=0, step_in_epoch=len(data))
    trainer.config.num_epochs = 2
    trainer.fit(resume=True, verbose=0)
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (
        2, 0, 2 * len(data))
