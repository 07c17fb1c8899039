"""The seed's model in backend-agnostic Keras 3: CNN + bidirectional GRU row encoder, GRU decoder
with cross-attention. Only ``keras.ops`` inside, so it runs under TensorFlow, JAX or PyTorch."""

from __future__ import annotations

import time
from dataclasses import asdict

import keras
from keras import layers, ops

from .config import ARCHITECTURE as ARCHITECTURE  # also importable from here, as before
from .config import Config


@keras.saving.register_keras_serializable("img2latex")
class Encoder(layers.Layer):
    """Image [B, H, W, 1] -> encoded features [B, rows * cols, enc_out_dim]."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.blocks = []
        for width, pool in zip(config.cnn_widths, config.cnn_pools, strict=True):
            block = [layers.Conv2D(width, 3, padding="same", use_bias=False),
                     layers.BatchNormalization(), layers.ReLU()]
            if pool > 1:
                block.append(layers.MaxPooling2D(pool))
            self.blocks.append(block)
        half = config.enc_out_dim // 2
        self.row_encoder = layers.Bidirectional(layers.GRU(half, return_sequences=True))
        self.row_embedding = layers.Embedding(config.max_rows, config.enc_out_dim)

    def feature_maps(self, images, training=False):
        """Output of each CNN block (for pictures of what the CNN sees)."""
        maps = []
        x = ops.subtract(1.0, images)  # ink bright, background 0: zero padding is background
        for block in self.blocks:
            for layer in block:
                x = layer(x, training=training)
            maps.append(x)
        return maps

    def call(self, images, training=False):
        x = self.feature_maps(images, training=training)[-1]
        shape = ops.shape(x)
        batch, rows, cols = shape[0], shape[1], shape[2]
        x = ops.reshape(x, (-1, cols, self.config.cnn_widths[-1]))
        x = self.row_encoder(x, training=training)
        x = ops.reshape(x, (batch, rows, cols, self.config.enc_out_dim))
        x = x + ops.cast(self.row_embedding(ops.arange(rows))[None, :, None, :], x.dtype)
        return ops.reshape(x, (batch, -1, self.config.enc_out_dim))


@keras.saving.register_keras_serializable("img2latex")
class Decoder(layers.Layer):
    """Tokens + encoded image -> logits; also steps one token at a time with its GRU state."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embedding = layers.Embedding(config.vocab_size, config.embedding_dim)
        self.gru = layers.GRU(config.decoder_units, return_sequences=True, return_state=True)
        self.attention = layers.MultiHeadAttention(
            config.attention_heads, config.attention_head_size, dropout=config.dropout)
        # Built here because decoding uses its projections one by one (see ``memory``).
        self.attention.build((None, None, config.decoder_units), (None, None, config.enc_out_dim))
        self.norm = layers.LayerNormalization()
        self.dropout = layers.Dropout(config.dropout)
        self.output_dense = layers.Dense(config.vocab_size)

    def memory(self, encoded):
        """The cross-attention's keys and values of encoded images, each [B, N, heads, size].

        They depend on the image only, so decoding projects them once, not at every token.
        """
        return self.attention.key_dense(encoded), self.attention.value_dense(encoded)

    def call(self, tokens, encoded, state=None, training=False, return_attention=False):
        """Logits [B, T, V], the last GRU state, and (optionally) attention [B, heads, T, N]."""
        return self.attend(tokens, self.memory(encoded), state, training, return_attention)

    def attend(self, tokens, memory, state=None, training=False, return_attention=False):
        """:meth:`call` with the keys and values already projected by :meth:`memory`."""
        x = self.dropout(self.embedding(tokens), training=training)
        if state is None:
            x, state = self.gru(x, training=training)
        else:
            x, state = self.gru(x, initial_state=state, training=training)
        keys, values = memory
        context, scores = self.attention._compute_attention(  # the layer's documented hook
            self.attention.query_dense(x), keys, values, training=training,
            return_attention_scores=True)
        x = self.norm(x + self.attention.output_dense(context))
        logits = self.output_dense(self.dropout(x, training=training))
        if return_attention:
            return logits, state, scores
        return logits, state


@keras.saving.register_keras_serializable("img2latex")
class Img2LaTeX(keras.Model):
    """Teacher-forced training model: ``(images, decoder_inputs) -> logits``."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = Encoder(config, name="encoder")
        self.decoder = Decoder(config, name="decoder")

    def call(self, inputs, training=False):
        images, tokens = inputs
        encoded = self.encoder(images, training=training)
        logits, _ = self.decoder(tokens, encoded, training=training)
        return logits

    def initial_state(self, batch_size: int):
        """Zero GRU state for incremental decoding."""
        return ops.zeros((batch_size, self.config.decoder_units))

    def get_config(self):
        return {"config": asdict(self.config), **super().get_config()}

    @classmethod
    def from_config(cls, values):
        return cls(Config.from_dict(values.pop("config")), **values)


def masked_loss(label_smoothing: float = 0.0):
    """Cross-entropy over non-pad targets (pad id 0 ignored), with optional label smoothing."""

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(y_true, 0), "float32")
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, y_true[..., None], axis=-1), -1)
        if label_smoothing:
            nll = (1 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)
        return ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)

    loss.__name__ = "masked_loss"
    return loss


def masked_accuracy(y_true, y_pred):
    """Share of non-pad target tokens predicted correctly (teacher forcing)."""
    y_true = ops.cast(y_true, "int32")
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    hits = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
    return ops.sum(hits * mask) / ops.maximum(ops.sum(mask), 1.0)


def build_model(config: Config, verbose: bool = True) -> Img2LaTeX:
    """Build the model with all weights created, and print parameter count and build time."""
    config.validate()
    if config.vocab_size < 5:
        raise ValueError("config.vocab_size must be set from the vocabulary")
    start = time.perf_counter()
    model = Img2LaTeX(config)
    width = config.width_step * 4
    model((ops.ones((1, config.image_height, width, 1)), ops.ones((1, 2), dtype="int32")))
    if verbose:
        print(f"Img2LaTeX: {model.count_params():,} parameters, built in "
              f"{time.perf_counter() - start:.1f} s")
    return model
