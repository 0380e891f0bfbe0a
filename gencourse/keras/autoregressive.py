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
from ..autoregressive import GPTConfig, generate
from ..contract import sampler
from . import torch_update, tracked


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
    """A decoder-only transformer over characters whose fit() runs our own torch-style step (lab 01).

    Built from the same GPTConfig as the PyTorch GPT (dropout is not used);
    `sample` runs the same sampling loop (`gencourse.autoregressive.generate`).
    """

    likelihood = "exact"

    def __init__(self, config: GPTConfig, **kwargs):
        super().__init__(**kwargs)
        validate.instance("config", config, GPTConfig)
        self.gpt_config = config
        self.tok_emb = layers.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = layers.Embedding(config.block_size, config.n_embd)
        self.blocks = [Block(config.n_embd, config.n_head) for _ in range(config.n_layer)]
        self.ln_f = layers.LayerNormalization(epsilon=1e-5)
        self.head = layers.Dense(config.vocab_size, use_bias=False)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self(ops.zeros((1, 1), dtype="int32"))               # create the weights now, not at fit's first batch

    def call(self, tokens):                                   # (B, T) -> (B, T, V)
        x = self.tok_emb(tokens) + self.pos_emb(ops.arange(ops.shape(tokens)[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    @property
    def config(self) -> GPTConfig:  # what the shared sampling loop reads (block_size)
        return self.gpt_config

    def loss_terms(self, data) -> dict:
        """{"loss": mean cross-entropy in nats of targets (B, T) given logits of inputs (B, T),
        "nll": nats per window}, for data = (inputs, targets)."""
        inputs, targets = data
        logits = self(inputs)
        loss = ops.mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
        return {"loss": loss, "nll": loss * ops.shape(targets)[1]}

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """log p(tokens[:, 1:] | tokens[:, 0]) in nats: (B, T) -> (B,), as GPT.log_prob."""
        validate.tensor("tokens", tokens, ndim=2, dtype="int", low=0, high=self.gpt_config.vocab_size - 1)
        logits = self(tokens[:, :-1])
        nll = keras.losses.sparse_categorical_crossentropy(tokens[:, 1:], logits, from_logits=True)
        return -ops.sum(nll, axis=1)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        self.zero_grad()                                      # torch-style: clear, forward, backward, apply
        return torch_update(self, self.loss_terms(data)["loss"])

    def test_step(self, data):
        return tracked(self, self.loss_terms(data))

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, prompt: torch.Tensor | None = None,
               max_new_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
        """n sequences (n, T0 + max_new_tokens) after a prompt (T0,), as GPT.sample, without a KV cache."""
        prompt = torch.zeros(1, dtype=torch.long) if prompt is None else prompt
        validate.tensor("prompt", prompt, ndim=1, dtype="int", low=0, high=self.gpt_config.vocab_size - 1)
        device = self.head.kernel.value.device
        return generate(self, prompt.expand(n, -1).to(device), max_new_tokens, temperature, top_k,
                        generator=generator, use_cache=False)


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
    with torch.no_grad():
        nll = torch.cat([-model.log_prob(windows_tensor[i:i + batch_size].to(model.head.kernel.value.device))
                         for i in range(0, len(windows_tensor), batch_size)])
    return float(nll.sum()) / (windows_tensor.shape[0] * (windows_tensor.shape[1] - 1))
