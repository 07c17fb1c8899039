"""Training on top of ``model.fit``: schedule, callbacks, atomic checkpoints, resume, loading."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import keras
import numpy as np

from .checkpoints import (
    CONFIG_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    VOCAB_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    checkpoint_folder,
    existing_checkpoint,
    load_weights,
    read_part,
    remove_stale_staging,
    save_checkpoint,
    training_position,
)
from .config import ARCHITECTURE, Config
from .model import build_model, masked_accuracy, masked_loss
from .tokenizer import Vocab


@keras.saving.register_keras_serializable("img2latex")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to ``peak * floor``."""

    def __init__(self, peak: float, warmup: int, total: int, floor: float = 0.05):
        self.peak, self.warmup, self.total, self.floor = peak, warmup, max(total, 1), floor

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1) / max(self.warmup, 1)
        progress = keras.ops.clip((step - self.warmup) / max(self.total - self.warmup, 1), 0, 1)
        cosine = self.peak * (self.floor + (1 - self.floor) * 0.5 *
                              (1 + keras.ops.cos(math.pi * progress)))
        return keras.ops.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total,
                "floor": self.floor}


# --- checkpoints ------------------------------------------------------------------------------



def global_step(model: keras.Model) -> int:
    """Optimizer steps taken so far (also for a variable mirrored over devices)."""
    # "+ 0" reads the variable into a tensor: numpy warns on converting the variable itself
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations.value + 0))


# --- callbacks --------------------------------------------------------------------------------


class ValidationCallback(keras.callbacks.Callback):
    """Each epoch: greedy-decode a small fixed validation subset, log BLEU, print samples."""

    def __init__(self, vocab: Vocab, images: Sequence, formulas: Sequence[str], show: int = 3):
        super().__init__()
        self.vocab, self.images, self.formulas, self.show = vocab, images, list(formulas), show
        self.producer = None  # built once: its compiled decoding loop is reused every epoch

    def on_epoch_end(self, epoch, logs=None):
        from .decoding import LatexProducer
        from .metrics import bleu4, exact_match

        if self.producer is None:
            self.producer = LatexProducer.from_model(self.model, self.vocab)
        predictions = self.producer.predict(list(self.images))
        references = [f.split() for f in self.formulas]
        hypotheses = [p.split() for p in predictions]
        logs = logs if logs is not None else {}
        logs["val_bleu"] = bleu4(references, hypotheses)
        logs["val_exact"] = exact_match(references, hypotheses)
        print(f"\nepoch {epoch + 1}: val BLEU-4 {logs['val_bleu']:.3f}, "
              f"exact {logs['val_exact']:.3f}")
        for target, prediction in list(zip(self.formulas, predictions, strict=True))[: self.show]:
            print(f"  target: {target}\n  output: {prediction}")


class CheckpointCallback(keras.callbacks.Callback):
    """Saves ``last/`` every ``every`` steps and each epoch; ``best/`` on a better val BLEU.

    ``offset`` batches of the first epoch were done before (a resumed run); an epoch cut short
    (``max_steps``) is saved with its position inside the epoch, so a resume finishes it.
    """

    def __init__(self, trainer: Trainer, every: int, offset: int, epoch_length: int):
        super().__init__()
        self.trainer, self.every, self.offset = trainer, every, offset
        self.epoch_length = epoch_length
        self.epoch, self.step_in_epoch = 0, offset

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step_in_epoch = epoch, self.offset

    def on_train_batch_end(self, batch, logs=None):
        self.step_in_epoch = batch + 1 + self.offset
        if self.every and global_step(self.model) % self.every == 0:
            self.trainer.save("last", epoch=self.epoch, step_in_epoch=self.step_in_epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.offset = 0
        if self.step_in_epoch < self.epoch_length:  # stopped inside the epoch
            self.trainer.save("last", epoch=epoch, step_in_epoch=self.step_in_epoch)
            return
        self.trainer.save("last", epoch=epoch + 1, step_in_epoch=0)
        score = (logs or {}).get("val_bleu")
        if score is not None and score > self.trainer.best_score:
            self.trainer.best_score = score
            self.trainer.save("best", epoch=epoch + 1, step_in_epoch=0)


class StepLog(keras.callbacks.Callback):
    """Appends ``global_step, epoch, loss, masked_accuracy, lr, seconds`` to a CSV file every
    ``every`` steps: the learning curve inside epochs (``log.csv`` has one row per epoch). The
    file, with its header, exists from the start of training, however short."""

    FIELDS = ("global_step", "epoch", "loss", "masked_accuracy", "lr", "seconds")

    def __init__(self, path: Path, every: int = 50):
        super().__init__()
        self.path, self.every = Path(path), every
        self.epoch, self.start = 0, time.time()

    def on_train_begin(self, logs=None):
        if not self.path.exists():
            self.path.write_text(",".join(self.FIELDS) + "\n")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if step % self.every:
            return
        logs = logs or {}
        optimizer = self.model.optimizer
        lr = optimizer.learning_rate
        if callable(lr):
            lr = lr(optimizer.iterations)
        values = (step, self.epoch, logs.get("loss", float("nan")),
                  logs.get("masked_accuracy", float("nan")),
                  float(keras.ops.convert_to_numpy(lr)), round(time.time() - self.start, 1))
        with self.path.open("a") as handle:
            handle.write(",".join(str(v) for v in values) + "\n")


class TimeBudget(keras.callbacks.Callback):
    """Trains for ``minutes`` of wall-clock time: a linear warm-up over ``warmup`` steps, then a
    cosine decay of the learning rate from ``peak`` to ``peak * floor`` over the time left, and a
    stop when the time is up. For a machine lent for a fixed time, where the steps it will
    manage are not known in advance."""

    def __init__(self, minutes: float, peak: float, warmup: int, floor: float = 0.05):
        super().__init__()
        self.seconds, self.peak, self.warmup, self.floor = minutes * 60, peak, warmup, floor
        self.start = time.monotonic()  # the budget spans every fit call of a resumed run

    def fraction(self) -> float:
        """Share of the budget spent so far."""
        return min((time.monotonic() - self.start) / self.seconds, 1.0)

    def on_train_batch_begin(self, batch, logs=None):
        step = global_step(self.model)
        if step < self.warmup:
            lr = self.peak * (step + 1) / self.warmup
        else:
            lr = self.peak * (self.floor + (1 - self.floor) * 0.5 *
                              (1 + math.cos(math.pi * self.fraction())))
        self.model.optimizer.learning_rate.assign(lr)

    def on_train_batch_end(self, batch, logs=None):
        if self.fraction() >= 1.0:
            self.model.stop_training = True


class StopAtStep(keras.callbacks.Callback):
    """Ends training after a given number of optimizer steps (for quick runs and tests)."""

    def __init__(self, max_steps: int):
        super().__init__()
        self.max_steps = max_steps

    def on_train_batch_end(self, batch, logs=None):
        if global_step(self.model) >= self.max_steps:
            self.model.stop_training = True


class _EpochEnd(keras.callbacks.Callback):
    """Tells the data that an epoch ended (``fit`` does not, for a ``tf.data`` pipeline)."""

    def __init__(self, data: keras.utils.PyDataset):
        super().__init__()
        self.data = data

    def on_epoch_end(self, epoch, logs=None):
        self.data.on_epoch_end()


def fit_input(data: keras.utils.PyDataset, height: int):
    """What ``fit`` gets. Under TensorFlow, a ``tf.data`` pipeline with an explicit signature:
    Keras would otherwise freeze the image width and sequence length seen in the first two
    batches. Other backends take the PyDataset as it is."""
    if keras.backend.backend() != "tensorflow":
        return data
    import tensorflow as tf

    signature = ((tf.TensorSpec((None, height, None, 1), tf.float32),
                  tf.TensorSpec((None, None), tf.int32)),
                 tf.TensorSpec((None, None), tf.int32))
    batches = tf.data.Dataset.from_generator(
        lambda: (data[i] for i in range(len(data))), output_signature=signature)
    return batches.apply(tf.data.experimental.assert_cardinality(len(data))).prefetch(4)


class _SkipBatches(keras.utils.PyDataset):
    """The rest of an epoch: ``dataset`` without its first ``skip`` batches."""

    def __init__(self, dataset: keras.utils.PyDataset, skip: int):
        super().__init__()
        self.dataset, self.skip = dataset, skip

    def __len__(self):
        return len(self.dataset) - self.skip

    def __getitem__(self, index):
        return self.dataset[index + self.skip]

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


# --- trainer ----------------------------------------------------------------------------------


def _strategy_scope(distribute: bool) -> tuple[AbstractContextManager, int]:
    """Data-parallel scope over all local devices, with the backend's own engine, and the
    number of replicas."""
    if not distribute:
        return nullcontext(), 1
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        return strategy.scope(), strategy.num_replicas_in_sync
    if backend == "jax":
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        return nullcontext(), len(distribution.device_mesh.devices.flatten())
    raise ValueError(f"--distribute is not supported with the {backend} backend")


class Trainer:
    """Builds (or resumes) a model and trains it with checkpoints, logs and validation."""

    def __init__(
        self,
        config: Config,
        vocab: Vocab,
        train_data: keras.utils.PyDataset,
        val_images: Sequence = (),
        val_formulas: Sequence[str] = (),
        distribute: bool = False,
        init_weights: str | Path | None = None,
    ):
        self.config, self.vocab, self.train_data = config, vocab, train_data
        self.val_images, self.val_formulas = list(val_images), list(val_formulas)
        self.save_dir = Path(config.save_dir)
        self.best_score = -1.0
        self.distribute = distribute
        config.vocab_size = len(vocab)
        keras.utils.set_random_seed(config.seed)
        scope, self.replicas = _strategy_scope(distribute)
        if config.batch_size % self.replicas:
            raise ValueError(f"batch_size {config.batch_size} is not a multiple of the "
                             f"{self.replicas} devices")
        with scope:
            self.model = build_model(config)
            if init_weights:
                load_weights(self.model, Path(init_weights), "this run's config")
            total = config.num_epochs * len(train_data)
            if config.max_steps:
                total = min(total, config.max_steps)
            schedule = (config.lr if config.max_minutes else  # set by TimeBudget
                        WarmupCosine(config.lr, config.warmup_steps, total, config.min_lr_ratio))
            self.model.compile(
                optimizer=keras.optimizers.Adam(schedule, clipnorm=config.clipnorm),
                loss=masked_loss(config.label_smoothing),
                metrics=[masked_accuracy],
            )

    def save(self, name: str, epoch: int, step_in_epoch: int) -> Path:
        """Checkpoint under ``save_dir/name`` with optimizer state and position."""
        state = {"epoch": epoch, "step_in_epoch": step_in_epoch,
                 "global_step": global_step(self.model),
                 "best_score": self.best_score, "saved_at": time.time()}
        return save_checkpoint(self.save_dir / name, self.model, self.vocab,
                               self.model.optimizer, state)

    def restore(self, directory: str | Path) -> dict:
        """Load weights, optimizer state and position from a checkpoint written by ``save``,
        after checking it was saved by a run of the same architecture and vocabulary."""
        remove_stale_staging(directory)
        directory = checkpoint_folder(Path(directory), (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE,
                                                         STATE_FILE))
        saved = read_part(Config.load, directory / CONFIG_FILE)
        differ = [name for name in ("vocab_size", *ARCHITECTURE)
                  if getattr(saved, name) != getattr(self.config, name)]
        if differ:
            def settings(config: Config) -> str:
                return ", ".join(f"{name}={getattr(config, name)!r}" for name in differ)

            raise CheckpointError(f"{directory / CONFIG_FILE}: the checkpoint has "
                                  f"{settings(saved)} but this run has {settings(self.config)}; "
                                  f"resume with the settings it was trained with, or drop "
                                  f"--resume to start a fresh run")
        if read_part(Vocab.load, directory / VOCAB_FILE).id_to_token != self.vocab.id_to_token:
            raise CheckpointError(f"{directory / VOCAB_FILE}: the checkpoint's vocabulary differs "
                                  f"from this run's; resume with --vocab {directory / VOCAB_FILE}")
        load_weights(self.model, directory / WEIGHTS_FILE, "this run's config")
        state = read_part(training_position, directory / STATE_FILE)
        if (directory / OPTIMIZER_FILE).exists():
            optimizer = self.model.optimizer
            optimizer.build(self.model.trainable_variables)
            values = np.load(directory / OPTIMIZER_FILE)
            arrays = [values[f"arr_{i}"] for i in range(len(values.files))]
            if len(arrays) != len(optimizer.variables) or any(
                    a.shape != tuple(v.shape)
                    for a, v in zip(arrays, optimizer.variables, strict=True)):
                raise CheckpointError(f"{directory / OPTIMIZER_FILE}: optimizer state does not "
                                      f"match the model")
            for variable, value in zip(optimizer.variables, arrays, strict=True):
                variable.assign(value)
        self.best_score = state.get("best_score", -1.0)
        return state

    def callbacks(self, max_steps: int | None, offset: int) -> list[keras.callbacks.Callback]:
        callbacks: list[keras.callbacks.Callback] = []
        if self.val_images:
            callbacks.append(ValidationCallback(self.vocab, self.val_images, self.val_formulas))
        callbacks.append(CheckpointCallback(self, self.config.checkpoint_every, offset,
                                            len(self.train_data)))
        callbacks.append(keras.callbacks.CSVLogger(str(self.save_dir / "log.csv"), append=True))
        callbacks.append(StepLog(self.save_dir / "steps.csv"))
        if keras.backend.backend() == "tensorflow":
            callbacks.append(keras.callbacks.TensorBoard(str(self.save_dir / "tensorboard")))
        if max_steps:
            callbacks.append(StopAtStep(max_steps))
        if self.time_budget is not None:
            callbacks.append(self.time_budget)
        if keras.backend.backend() == "tensorflow":
            callbacks.append(_EpochEnd(self.train_data))
        return callbacks

    def fit(self, resume: bool = False, max_steps: int | None = None, verbose: int | str = "auto"):
        """Train for ``config.num_epochs`` (or ``max_steps``, by default ``config.max_steps``);
        resume from ``save_dir/last`` (a CheckpointError if there is none)."""
        max_steps = max_steps or self.config.max_steps or None
        epoch, offset = 0, 0
        last = self.save_dir / "last"
        if resume:
            if not existing_checkpoint(last).exists():
                raise CheckpointError(f"{last}: no checkpoint to resume from; drop --resume to "
                                      f"start a fresh run")
            state = self.restore(last)
            epoch, offset = state["epoch"], state["step_in_epoch"]
            if offset >= len(self.train_data):  # saved at the epoch's last batch: it is done
                epoch, offset = epoch + 1, 0
            print(f"resuming from {last}: epoch {epoch + 1}, step {state['global_step']}")
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self.config.save(self.save_dir / CONFIG_FILE)
        self.model.stop_training = False
        self.time_budget = (TimeBudget(self.config.max_minutes, self.config.lr,
                                       self.config.warmup_steps, self.config.min_lr_ratio)
                            if self.config.max_minutes else None)
        history = None
        if offset and offset < len(self.train_data):
            self._set_epoch(epoch)
            history = self.model.fit(
                fit_input(_SkipBatches(self.train_data, offset), self.config.image_height),
                initial_epoch=epoch, epochs=epoch + 1,
                callbacks=self.callbacks(max_steps, offset), verbose=verbose, shuffle=False)
            epoch += 1
        if epoch < self.config.num_epochs and not self.model.stop_training:
            self._set_epoch(epoch)
            history = self.model.fit(
                fit_input(self.train_data, self.config.image_height),
                initial_epoch=epoch, epochs=self.config.num_epochs,
                callbacks=self.callbacks(max_steps, 0), verbose=verbose, shuffle=False)
        return history

    def _set_epoch(self, epoch: int) -> None:
        """Put the data's shuffling where it was at ``epoch`` (so a resume sees the same order)."""
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
