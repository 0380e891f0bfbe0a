"""Autoregressive transformers: a GPT for characters and for the pixels of digits.

Introduced in chapter 1 and lab 01. The model factorises a sequence with the
chain rule, p(x) = prod_i p(x_i | x_<i), and a decoder-only transformer
predicts every conditional at once.

It follows:
- Vaswani et al. (2017), "Attention Is All You Need": scaled dot-product
  attention, multiple heads, position embeddings, the causal mask;
- Radford et al. (2018, 2019), GPT and GPT-2: a decoder-only stack with layer
  norm before each sub-layer (pre-LN), learned positions, next-token loss;
  the layout of Karpathy's nanoGPT (config, blocks, model, sampling);
- van den Oord et al. (2016), PixelRNN/PixelCNN: an image as a sequence of
  pixels in raster order, each predicted from every pixel of the rows above
  and the pixels to its left in its own row;
- Holtzman et al. (2020): temperature, top-k and nucleus (top-p) sampling.
Sampling can keep the keys and values of past tokens (a "KV cache") so that
each new token costs one position's work instead of the whole prefix's.

Read top to bottom: configs, attention, blocks, the GPT, sampling, the image
model, and a small LSTM used only to compare training speed.

Notation (book/notation.md): the book numbers tokens from 1, x_1 .. x_L; tensors
count from 0, so tokens[:, i] is the book's x_{i+1}. Shapes are written as in
nanoGPT, (B, T, C) for batch, length and width: that T is the book's sequence
length L, not a number of diffusion steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import validate
from .contract import evaluating, sampler
from .data import unpack


# ----------------------------------------------------------------------------- configs

@dataclass
class GPTConfig:
    vocab_size: int = 96        # number of distinct tokens (characters, pixel values, start tokens)
    block_size: int = 256       # context length: the most tokens the model reads (learned positions)
    n_layer: int = 2            # transformer blocks
    n_head: int = 4             # attention heads per block; each reads n_embd // n_head dimensions
    n_embd: int = 64            # width of the residual stream
    dropout: float = 0.0        # on the embeddings and residual branches (0 for small, short runs)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            validate.positive_int(name, getattr(self, name))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @classmethod
    def fast(cls, **changes) -> "GPTConfig":
        """A 2-layer, 64-wide character model with a 64-character context, for a CPU (lab 01).
        Set vocab_size to the tokenizer's: GPTConfig.fast(vocab_size=tokenizer.vocab_size)."""
        return cls(**{**dict(block_size=64, n_layer=2, n_head=4, n_embd=64), **changes})

    @classmethod
    def full(cls, **changes) -> "GPTConfig":
        """nanoGPT's tiny-shakespeare character model: 6 layers, 384 wide, for a GPU (lab 01)."""
        return cls(**{**dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2), **changes})


# ----------------------------------------------------------------------------- attention

def causal_mask(t_query: int, t_key: int | None = None, device=None) -> torch.Tensor:
    """(t_query, t_key) booleans, True where a query may look at a key (chapter 1).

    The queries are the LAST t_query of the t_key positions (t_key > t_query
    when a KV cache holds earlier keys), so query i sits at position
    t_key - t_query + i and sees every key j at or before it.
    """
    t_key = t_query if t_key is None else t_key
    validate.positive_int("t_query", t_query)
    validate.positive_int("t_key", t_key)
    if t_key < t_query:
        raise ValueError(f"t_key ({t_key}) must be at least t_query ({t_query})")
    return torch.ones(t_query, t_key, dtype=torch.bool, device=device).tril(diagonal=t_key - t_query)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + M) v, with M = -inf on future keys when causal (chapter 1, lab 01).

    q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> (..., Tq, dv). The
    leading dimensions are batch and heads, e.g. (B, n_head, T, head_size).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        validate.tensor(name, x, dtype="float")
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., T, d), got shape {tuple(x.shape)}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"q, k, v do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; "
                         "q and k need the same last size, k and v the same length")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])            # (..., Tq, Tk)
    if causal:
        mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v                                     # (..., Tq, dv)


class KVCache:
    """Keys and values of every token seen so far, per layer, for fast sampling (chapter 1).

    A new token's query must meet the keys and values of all earlier tokens;
    those never change (the mask stops them from seeing later tokens), so we
    compute them once and append.
    """

    def __init__(self, n_layer: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    def __len__(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v (B, nh, T, hs) to layer `layer`; return all of them."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=-2)
            v = torch.cat([self.values[layer], v], dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: every position mixes the values of itself and its past."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.n_head, self.layer = config.n_head, layer
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)   # queries, keys, values of all heads at once
        self.proj = nn.Linear(config.n_embd, config.n_embd)      # mixes the heads back into the stream
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                                    # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.extend(self.layer, k, v)                               # (B, nh, T_past + T, hs)
        # attention() above, fused into one kernel that never stores the (T, T) scores
        past = k.shape[-2] - T
        mask = None if past == 0 or T == 1 else causal_mask(T, k.shape[-2], x.device)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=past == 0 and T > 1)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)                                  # heads side by side
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """A pre-LN transformer block: x + attention(LN(x)), then x + MLP(LN(x)) (GPT-2).

    attention: None for CausalSelfAttention, or a class called as attention(n_embd, n_head) whose
    instances map (B, T, C) -> (B, T, C) (lab 01's own module); such a block has no KV cache.
    """

    def __init__(self, config: GPTConfig, layer: int = 0, attention=None):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        own = attention is None or attention is CausalSelfAttention
        self.attn = CausalSelfAttention(config, layer) if own else attention(config.n_embd, config.n_head)
        self.caches = own
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd), nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        h = self.ln1(x)
        x = x + (self.attn(h, cache) if self.caches else self.attn(h))    # tokens exchange information
        return x + self.mlp(self.ln2(x))         # each token computes on its own


# ----------------------------------------------------------------------------- the GPT

def next_token_loss(logits_fn, window: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of predicting window[:, 1:] from window[:, :-1] (chapter 1, lab 01).

    logits_fn maps tokens (B, T) to logits (B, T, V); position t of the
    output predicts the token at t + 1 of the window.
    """
    validate.tensor("window", window, ndim=2, dtype="int")
    if window.shape[1] < 2:
        raise ValueError(f"window needs at least 2 tokens (inputs and one target), got shape {tuple(window.shape)}")
    inputs, targets = window[:, :-1], window[:, 1:]                  # (B, T) each, shifted by one
    logits = logits_fn(inputs)                                       # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class GPT(nn.Module):
    """A decoder-only transformer over tokens 0 .. vocab_size - 1 (chapter 1, lab 01).

    forward(tokens) gives next-token logits at every position; loss(window)
    is the next-token cross-entropy; log_prob scores sequences exactly;
    sample continues prompts, with a KV cache by default. attention: a module
    class to use instead of CausalSelfAttention (lab 01 trains with the
    learner's), called as attention(n_embd, n_head); it has no KV cache.
    """

    likelihood = "exact"

    def __init__(self, config: GPTConfig, attention=None):
        super().__init__()
        validate.instance("config", config, GPTConfig)
        if attention is not None and not callable(attention):
            raise TypeError(f"attention must be a module class, called as attention(n_embd, n_head), got "
                            f"{type(attention).__name__}")
        self.config = config
        self.supports_cache = attention in (None, CausalSelfAttention)   # another module has no KV cache
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)   # learned positions, as in GPT
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i, attention) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(_init_weights)

    def check_tokens(self, tokens: torch.Tensor, name: str = "tokens") -> torch.Tensor:
        """Raise a clear error unless tokens is (B, T) integers in the vocabulary that fit the context.
        Called by the public entry points (loss, log_prob, sample), not by forward: the value check
        reads the tensor, which would stall a GPU on every sampled token."""
        validate.tensor(name, tokens, ndim=2, dtype="int", low=0, high=self.config.vocab_size - 1)
        self._check_length(tokens, 0, name)
        return tokens

    def _check_window(self, window: torch.Tensor, name: str) -> None:
        """A window (B, T + 1) of tokens in the vocabulary whose inputs window[:, :-1] fit the context."""
        validate.tensor(name, window, ndim=2, dtype="int", low=0, high=self.config.vocab_size - 1)
        if window.shape[1] < 2:
            raise ValueError(f"{name} needs at least 2 tokens (inputs and one target), got shape {tuple(window.shape)}")
        self._check_length(window[:, :-1], 0, f"{name}[:, :-1]")

    def _check_length(self, tokens: torch.Tensor, past: int, name: str = "tokens") -> None:
        if tokens.dim() != 2 or tokens.shape[1] == 0:
            raise ValueError(f"{name} must have shape (B, T) with T >= 1, got {tuple(tokens.shape)}")
        if past + tokens.shape[1] > self.config.block_size:
            raise ValueError(f"{name} has {past + tokens.shape[1]} positions but the context (block_size) is "
                             f"{self.config.block_size}: crop the sequence to its last {self.config.block_size} tokens")

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Tokens (B, T) -> next-token logits (B, T, vocab_size). With a cache, tokens continue it."""
        past = len(cache) if cache is not None else 0
        self._check_length(tokens, past)                                    # shapes only: cheap
        positions = torch.arange(past, past + tokens.shape[1], device=tokens.device)
        x = self.drop(self.tok_emb(tokens) + self.pos_emb(positions))     # (B, T, C)
        for block in self.blocks:
            x = block(x, cache)
        return self.head(self.ln_f(x))                                     # (B, T, V)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        """Next-token cross-entropy of windows (B, T + 1): nats per token (the loss) and, as "nll",
        nats per window, -log p(window[:, 1:] | window[:, 0]), which log_prob gives exactly."""
        window, _ = unpack(batch)
        self._check_window(window, "window")
        loss = next_token_loss(self, window)
        return {"loss": loss, "nll": loss * (window.shape[1] - 1)}

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """log p(tokens[:, 1:] | tokens[:, 0]) in nats, exact, by the chain rule: (B, T) -> (B,).
        The model reads tokens[:, :-1], so T may be block_size + 1 (a training window)."""
        self._check_window(tokens, "tokens")
        logp = self(tokens[:, :-1]).log_softmax(dim=-1)                   # (B, T - 1, V)
        return logp.gather(-1, tokens[:, 1:, None]).squeeze(-1).sum(dim=1)

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, prompt: torch.Tensor | None = None,
               max_new_tokens: int = 200, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, use_cache: bool = True) -> torch.Tensor:
        """n sequences of max_new_tokens sampled tokens after a prompt (chapter 1, lab 01).

        prompt: tokens (T0,) that every sequence continues, or (n, T0), one per
        sequence; by default token 0 (a newline for our character tokenizer).
        Returns (n, T0 + max_new_tokens) tokens, the prompt included.
        """
        device = self.head.weight.device
        if prompt is None:
            prompt = torch.zeros(1, dtype=torch.long)
        validate.tensor("prompt", prompt, ndim=(1, 2), dtype="int")
        prompt = prompt.expand(n, -1) if prompt.dim() == 1 else prompt
        if len(prompt) != n:
            raise ValueError(f"prompt holds {len(prompt)} sequences but n is {n}: pass one prompt (T0,) or n (n, T0)")
        self.check_tokens(prompt[:, -self.config.block_size:], name="prompt")
        return generate(self, prompt.to(device), max_new_tokens, temperature, top_k, top_p, generator, use_cache)


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------- sampling

def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """The distribution a sampler draws from: logits (B, V) -> probabilities (B, V) (chapter 1, lab 01).

    temperature divides the logits (below 1 sharpens, above 1 flattens);
    top_k keeps the k most likely tokens; top_p keeps the smallest set of
    most likely tokens whose probability reaches p (nucleus sampling).
    Greedy decoding is top_k=1.
    """
    validate.tensor("logits", logits, ndim=2, dtype="float")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0 (use top_k=1 for greedy decoding), got {temperature!r}")
    logits = logits / temperature
    if top_k is not None:
        validate.positive_int("top_k", top_k)
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]    # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        logits = nucleus(logits, top_p)
    return logits.softmax(dim=-1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of logits (B, V) -> (B,) from next_token_probs (chapter 1, lab 01)."""
    probs = next_token_probs(logits, temperature, top_k, top_p)
    where = generator.device if generator is not None else probs.device     # the generator's device draws
    return torch.multinomial(probs.to(where), 1, generator=generator).squeeze(-1).to(probs.device)


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus (top-p) filtering (chapter 1, lab 01): logits (B, V) with -inf outside the smallest set of
    most likely tokens whose probability reaches top_p; the kept logits are unchanged."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    mass_before = sorted_logits.softmax(dim=-1).cumsum(dim=-1) - sorted_logits.softmax(dim=-1)
    drop_sorted = mass_before >= top_p                      # already covered p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)      # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_loop(model: GPT, tokens: torch.Tensor, steps: int, sample) -> torch.Tensor:
    """The sampling loop at its plainest: append `steps` tokens to `tokens` (B, T0), one at a time (lab 01).

    Each step crops the sequence to the model's context, runs the model, and hands the logits of the
    last position (B, V) to `sample`, which returns one token per row (B,). Returns (B, T0 + steps).
    """
    validate.tensor("tokens", tokens, ndim=2, dtype="int")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"the number of new tokens must be an int >= 0, got {steps!r}")
    with evaluating(model):
        for _ in range(steps):
            logits = model(tokens[:, -model.config.block_size:])[:, -1]         # (B, V) at the last position
            tokens = torch.cat([tokens, sample(logits)[:, None]], dim=1)
    return tokens


def generate(model: GPT, tokens: torch.Tensor, steps: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, generator: torch.Generator | None = None, use_cache: bool = True,
             vocab_limit: int | None = None) -> torch.Tensor:
    """sample_loop with sample_next's sampler, and a KV cache by default (chapter 1).

    Without a cache every step runs the model over the whole (cropped) prefix.
    With one, the prompt is read once and each later step feeds only the
    newest token. Past the context length the prefix must be cropped, which
    shifts every position, so the loop falls back to recomputing. A model
    built with another attention module (GPT(config, attention=...)) has no
    cache. vocab_limit restricts sampling to tokens below it (the image model's pixels).
    """
    def sample(logits):
        logits = logits if vocab_limit is None else logits[:, :vocab_limit]
        return sample_next(logits, temperature, top_k, top_p, generator=generator)

    if not (use_cache and getattr(model, "supports_cache", True)):
        return sample_loop(model, tokens, steps, sample)
    validate.tensor("tokens", tokens, ndim=2, dtype="int")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"the number of new tokens must be an int >= 0, got {steps!r}")
    block, cache = model.config.block_size, KVCache(model.config.n_layer)
    with evaluating(model):
        for _ in range(steps):
            if tokens.shape[1] <= block:
                logits = model(tokens[:, len(cache):], cache)[:, -1]      # only what the cache has not seen
            else:
                logits = model(tokens[:, -block:])[:, -1]                 # (B, V) at the last position
            tokens = torch.cat([tokens, sample(logits)[:, None]], dim=1)
    return tokens


# ----------------------------------------------------------------------------- images as sequences

def image_to_tokens(x: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """Images (N, 1, H, W) in [0, 1] -> tokens (N, H * W) in raster order (chapter 1, lab 01).

    Raster order reads row by row, left to right, like text; a pixel's value
    v becomes the token round(v * (levels - 1)): 0 or 1 for binarized digits.
    """
    validate.tensor("x", x, ndim=4, dtype="float", low=0.0, high=1.0)
    validate.positive_int("levels", levels)
    if x.shape[1] != 1:
        raise ValueError(f"x must have one channel (N, 1, H, W), got shape {tuple(x.shape)}")
    return (x * (levels - 1)).round().long().flatten(start_dim=1)      # (N, H * W)


def tokens_to_image(tokens: torch.Tensor, side: int, levels: int = 2) -> torch.Tensor:
    """Tokens (N, side * side) in raster order -> images (N, 1, side, side) in [0, 1] (lab 01)."""
    validate.positive_int("side", side)
    validate.tensor("tokens", tokens, ndim=2, dtype="int", low=0, high=levels - 1, shape=(None, side * side))
    return (tokens.float() / max(1, levels - 1)).view(-1, 1, side, side)


def raster_frames(images: torch.Tensor, stages: int = 8) -> tuple[list[torch.Tensor], list[str]]:
    """How a raster-order model draws (chapter 1, lab 01): images (N, C, H, W) revealed pixel by pixel,
    grey where not drawn yet, in `stages` + 1 frames, with a label for each."""
    validate.tensor("images", images, ndim=4, dtype="float")
    validate.positive_int("stages", stages)
    flat = images.flatten(start_dim=1)                                        # (N, D) in raster order
    frames, labels = [], []
    for n in range(0, flat.shape[1] + 1, max(1, flat.shape[1] // stages)):
        partial = torch.full_like(flat, 0.5)
        partial[:, :n] = flat[:, :n]
        frames.append(partial.view_as(images))
        labels.append(f"{n} pixels")
    return frames, labels


def sequence_nll(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """-log p(tokens) in nats per sequence, summed over positions: logits (N, D, V), tokens (N, D) -> (N,)."""
    validate.tensor("logits", logits, ndim=3, dtype="float")
    validate.tensor("tokens", tokens, ndim=2, dtype="int", low=0, high=logits.shape[-1] - 1,
                    shape=tuple(logits.shape[:2]))
    logp = logits.log_softmax(dim=-1).gather(-1, tokens[..., None]).squeeze(-1)   # (N, D)
    return -logp.sum(dim=1)


def bits_per_dim(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood in bits per dimension of each sequence: (N, D, V), (N, D) -> (N,) (lab 01).

    -log2 p(x) / D = sum_i -ln p(x_i | x_<i) / (D ln 2).
    """
    return sequence_nll(logits, tokens) / (tokens.shape[1] * math.log(2))


@dataclass
class ImageARConfig:
    side: int = 8                    # images are side x side pixels, read in raster order
    levels: int = 2                  # values a pixel can take (2: binarized)
    num_classes: int | None = None   # None: one start token; an int: one start token per class (conditional)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.1             # 1257 training digits are few: a little dropout against overfitting

    @classmethod
    def fast(cls, **changes) -> "ImageARConfig":
        """8x8 binarized digits: 64 pixel tokens (lab 01)."""
        return cls(**changes)

    @classmethod
    def full(cls, **changes) -> "ImageARConfig":
        """28x28 binarized MNIST: 784 pixel tokens, a larger network for a GPU (lab 01)."""
        return cls(**{**dict(side=28, n_layer=6, n_head=8, n_embd=256, dropout=0.1), **changes})

    def gpt_config(self) -> GPTConfig:
        """Pixel values 0 .. levels - 1, then the start tokens; the context holds start + D - 1 pixels."""
        starts = self.num_classes or 1
        return GPTConfig(vocab_size=self.levels + starts, block_size=self.side * self.side,
                         n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout)


class ImageAR(nn.Module):
    """An autoregressive model of images: a GPT over pixels in raster order (chapter 1, lab 01).

    Pixels are numbered from 1 as in the book, x_1 .. x_D in raster order. The GPT
    reads [start, x_1, ..., x_{D-1}], and its output at index i (counted from 0,
    as tensors are) is the distribution of pixel x_{i+1} given the start token
    and x_1 .. x_i: position i + 1 in the book's counting. The start token (one
    per class when conditional) lets the first pixel be predicted too. log_prob
    is exact.
    """

    likelihood = "exact"

    def __init__(self, config: ImageARConfig):
        super().__init__()
        validate.instance("config", config, ImageARConfig)
        self.config = config
        self.dims = config.side * config.side
        self.gpt = GPT(config.gpt_config())

    def _start(self, n: int, y: torch.Tensor | None, device) -> torch.Tensor:
        """The start tokens (n, 1): `levels`, or levels + class when conditional."""
        if self.config.num_classes is None:
            return torch.full((n, 1), self.config.levels, dtype=torch.long, device=device)
        if y is None:
            raise ValueError(f"this model is class-conditional ({self.config.num_classes} classes): pass labels y")
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.long)
        validate.tensor("y", y, shape=(n,), dtype="int", low=0, high=self.config.num_classes - 1)
        return (self.config.levels + y).long().to(device)[:, None]

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images (N, 1, side, side) -> logits (N, D, levels) of each pixel given the pixels before it."""
        validate.tensor("x", x, dtype="float", shape=(None, 1, self.config.side, self.config.side))
        tokens = image_to_tokens(x, self.config.levels)                         # (N, D)
        inputs = torch.cat([self._start(len(x), y, x.device), tokens[:, :-1]], dim=1)   # shift right by one
        return self.gpt(inputs)[..., :self.config.levels]                       # start tokens are never targets

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) in nats, exact by the chain rule: (N, 1, side, side) -> (N,)."""
        return -sequence_nll(self.logits(x, y), image_to_tokens(x, self.config.levels))

    def loss(self, batch) -> dict[str, torch.Tensor]:
        """Nats per pixel (the loss) and nats per image ('nll')."""
        x, y = unpack(batch)
        nll = -self.log_prob(x, y if self.config.num_classes else None).mean()
        return {"loss": nll / self.dims, "nll": nll}

    @sampler
    def sample(self, n: int, *, generator: torch.Generator | None = None, y: torch.Tensor | None = None,
               temperature: float = 1.0, top_k: int | None = None, use_cache: bool = True) -> torch.Tensor:
        """n images (n, 1, side, side) in [0, 1], pixel by pixel in raster order (chapter 1, lab 01).
        y: a label, or labels (n,), of a class-conditional model."""
        device = self.gpt.head.weight.device
        start = self._start(n, y, device)
        tokens = generate(self.gpt, start, self.dims, temperature, top_k, None, generator, use_cache,
                          vocab_limit=self.config.levels)
        return tokens_to_image(tokens[:, 1:], self.config.side, self.config.levels)


# ----------------------------------------------------------------------------- an RNN, for comparison

class LSTMLanguageModel(nn.Module):
    """A character LSTM (Hochreiter & Schmidhuber, 1997): the recurrent baseline of chapter 1.

    Same interface as GPT (forward, loss). It must read a sequence one step
    at a time, even in training; chapter 1 times it against the transformer.
    """

    def __init__(self, vocab_size: int, n_embd: int = 64, n_layer: int = 2):
        super().__init__()
        validate.positive_int("vocab_size", vocab_size)
        self.vocab_size = vocab_size
        self.emb = nn.Embedding(vocab_size, n_embd)
        self.lstm = nn.LSTM(n_embd, n_embd, num_layers=n_layer, batch_first=True)
        self.head = nn.Linear(n_embd, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(tokens))                                 # (B, T, C), step by step inside
        return self.head(h)

    def loss(self, batch) -> dict[str, torch.Tensor]:
        window, _ = unpack(batch)
        return {"loss": next_token_loss(self, window)}


def step_time(model: nn.Module, batch: torch.Tensor, repeats: int = 3) -> float:
    """Seconds for one forward and backward pass of model.loss(batch), the best of `repeats` (chapter 1)."""
    validate.positive_int("repeats", repeats)
    sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    model.train()
    model.loss(batch)["loss"].backward()         # warm-up, not timed
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        sync()
        start = time.perf_counter()
        model.loss(batch)["loss"].backward()
        sync()
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return min(times)
