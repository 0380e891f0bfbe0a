"""The character GPT of chapter 1 in Keras 3, on the torch backend (lab 01).

The same architecture as gencourse.autoregressive.GPT (token and learned
position embeddings, pre-LN blocks with causal multi-head attention and a GELU
MLP, a final layer norm), built from Keras layers, and trained by Keras' own
fit() with a torch-style custom train_step, as in the keras-io guide
"Customizing what happens in fit() with PyTorch".
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from keras import layers, ops

from .. import validate
from . import torch_update


class Block(layers.Layer):
    """x + attention(LN(x)) with a causal mask, then x + MLP(LN(x))."""

    def __init__(self, n_embd: int, n_head: int, **kwargs):
        super().__init__(**kwargs)
        self.ln1 = layers.LayerNormalization(epsilon=1e-5)
        self.attn = layers.MultiHeadAttention(num_heads=n_head, key_dim=n_embd // n_head)
        self.ln2 = layers.LayerNormalization(epsilon=1e-5)
        self.up = layers.Dense(4 * n_embd, activation="gelu")
        self.down = layers.Dense(n_embd)

    def call(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, use_causal_mask=True)
        return x + self.down(self.up(self.ln2(x)))


class CharGPT(keras.Model):
    """A decoder-only transformer over characters whose fit() runs our own torch-style step (lab 01)."""

    def __init__(self, vocab_size: int, block_size: int = 64, n_layer: int = 2, n_head: int = 4,
                 n_embd: int = 64, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("vocab_size", vocab_size), ("block_size", block_size), ("n_layer", n_layer),
                        ("n_head", n_head), ("n_embd", n_embd)):
            validate.positive_int(name, v)
        self.vocab_size, self.block_size = vocab_size, block_size
        self.tok_emb = layers.Embedding(vocab_size, n_embd)
        self.pos_emb = layers.Embedding(block_size, n_embd)
        self.blocks = [Block(n_embd, n_head) for _ in range(n_layer)]
        self.ln_f = layers.LayerNormalization(epsilon=1e-5)
        self.head = layers.Dense(vocab_size, use_bias=False)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, tokens):                                   # (B, T) -> (B, T, V)
        x = self.tok_emb(tokens) + self.pos_emb(ops.arange(ops.shape(tokens)[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def next_token_loss(self, inputs, targets):
        """Mean cross-entropy in nats of targets (B, T) given logits of inputs (B, T)."""
        logits = self(inputs, training=True)
        return ops.mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        inputs, targets = data
        self.zero_grad()                                      # torch-style: clear, forward, backward, apply
        loss = self.next_token_loss(inputs, targets)
        return torch_update(self, loss)


def windows(tokens: torch.Tensor, length: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` random windows of `length` + 1 tokens, split into inputs and next-token targets (lab 01)."""
    validate.tensor("tokens", tokens, ndim=1, dtype="int")
    validate.positive_int("length", length)
    validate.positive_int("count", count)
    if len(tokens) <= length:
        raise ValueError(f"need more than length={length} tokens, got {len(tokens)}")
    starts = torch.randint(0, len(tokens) - length, (count,), generator=torch.Generator().manual_seed(seed))
    w = torch.stack([tokens[s:s + length + 1] for s in starts.tolist()]).numpy()
    return w[:, :-1], w[:, 1:]


def evaluate_loss(model: CharGPT, windows_tensor: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats) of windows (N, T + 1), without training (lab 01)."""
    validate.tensor("windows", windows_tensor, ndim=2, dtype="int")
    total, n = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows_tensor), batch_size):
            w = windows_tensor[start:start + batch_size].numpy()
            logits = model(w[:, :-1], training=False)
            loss = keras.losses.sparse_categorical_crossentropy(w[:, 1:], logits, from_logits=True)
            total += float(ops.sum(loss))
            n += loss.shape[0] * loss.shape[1]
    return total / n
