"""Checks of lab 01, "Autoregressive transformers": attention, the next-token loss, sampling, images as tokens.

Each check runs the learner's function and the reference of gencourse.autoregressive on the same seeded
inputs, and when they disagree, tries the usual mistakes one by one to say which one it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import autoregressive as ar
from . import call, expect_tensor, passed


def _qkv(seed: int, shape=(2, 3, 5, 8)):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g) for _ in range(3))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=tol, rtol=tol)


# ----------------------------------------------------------------------------- exercise 1.1

def _attention_mistakes(q, k, v):
    """What the usual wrong versions of causal attention return, with what to say about each."""
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    T = q.shape[-2]
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    return [
        (ar.attention(q, k, v, causal=False),
         "future tokens leak into the past: position t also attends to positions after t. Set the scores of "
         "keys j > t to -inf before the softmax (torch.ones(T, T).tril() marks the allowed pairs)."),
        ((scores / math.sqrt(d)).masked_fill(future.T, float("-inf")).softmax(-1) @ v,
         "the mask points the wrong way: each position sees its FUTURE instead of its past. Keep the lower "
         "triangle (j <= t), i.e. tril, and mask the upper one."),
        (scores.masked_fill(future, float("-inf")).softmax(-1) @ v,
         "the scores are not scaled: divide q k^T by sqrt(d) (d = q.shape[-1]) before the softmax, or the "
         "softmax saturates as d grows."),
        ((scores / d).masked_fill(future, float("-inf")).softmax(-1) @ v,
         "you divide the scores by d; divide by sqrt(d), the standard deviation of a dot product of d "
         "unit-variance terms."),
        ((scores / math.sqrt(d)).masked_fill(future, 0.0).softmax(-1) @ v,
         "masked scores are set to 0, but exp(0) = 1 still gives future tokens weight. Fill them with "
         "float('-inf') so that their softmax weight is exactly 0."),
        ((scores / math.sqrt(d)).masked_fill(future, float("-inf")).softmax(-2).nan_to_num() @ v,
         "the softmax runs over the wrong axis: normalise over the keys (dim=-1), so that each query's "
         "weights sum to one."),
        ((scores / math.sqrt(d)).softmax(-1).masked_fill(future, 0.0) @ v,
         "you mask AFTER the softmax, so each row's remaining weights no longer sum to one. Mask the scores "
         "with -inf first, then take the softmax."),
    ]


def _first_leak(fn, q, k, v, got) -> tuple[int, int] | None:
    """The first (t, j) with j > t such that changing token j's key and value changes output t."""
    for j in range(1, q.shape[-2]):
        k2, v2 = k.clone(), v.clone()
        k2[..., j, :] += 5.0
        v2[..., j, :] -= 5.0
        again = call("1.1", fn, q, k2, v2)
        if isinstance(again, torch.Tensor) and again.shape == got.shape:
            changed = (again[..., :j, :] - got[..., :j, :]).abs().amax(dim=(0, 1, 3)) > 1e-4  # (j,)
            if changed.any():
                return int(changed.nonzero()[0]), j
    return None


def attention(fn) -> None:
    """Exercise 1.1: scaled dot-product attention with a causal mask."""
    q, k, v = _qkv(seed=11)
    got = call("1.1", fn, q, k, v)
    if isinstance(got, torch.Tensor) and got.shape == (2, 3, 5, 5):
        raise AssertionError("Exercise 1.1: you return the attention weights (B, heads, T, T); multiply them "
                             "by v to return the mixed values (B, heads, T, d).")
    got = expect_tensor("1.1", "attention(q, k, v)", got, q.shape)
    want = ar.attention(q, k, v)
    leak = _first_leak(fn, q, k, v, got)
    where = f" (for example, your mask lets position {leak[0]} attend to position {leak[1]})" if leak else ""
    if not _close(got, want):
        for wrong, message in _attention_mistakes(q, k, v):
            if _close(got, wrong):
                raise AssertionError(f"Exercise 1.1: {message}{where}")
        if leak:
            raise AssertionError(f"Exercise 1.1: your mask lets position {leak[0]} attend to position {leak[1]}: "
                                 "changing a later token changed an earlier output. Keys j > t must get -inf.")
        b, h, t, _ = [int(i) for i in torch.nonzero((got - want).abs() > 1e-4)[0]]
        raise AssertionError(
            f"Exercise 1.1: at batch {b}, head {h}, position {t} your output differs from "
            "softmax(q k^T / sqrt(d) + mask) v. Check the three steps: scores, mask with -inf, softmax over "
            "the last axis, then the product with v.")
    if leak:  # right on this input, yet the future leaks (e.g. a mask that is only right for this T)
        raise AssertionError(f"Exercise 1.1: your mask lets position {leak[0]} attend to position {leak[1]}: "
                             "changing a later token changed an earlier output. Keys j > t must get -inf.")
    passed("causal attention is right, and the future does not leak into the past")


# ----------------------------------------------------------------------------- exercise 1.2

class _Recorder(torch.nn.Module):
    """A tiny GPT that remembers the inputs it was given."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng():  # a fixed model, without touching the learner's random state
            torch.manual_seed(0)
            self.gpt = ar.GPT(ar.GPTConfig(vocab_size=7, block_size=12, n_layer=1, n_head=2, n_embd=16))
        self.seen = []

    def forward(self, tokens):
        self.seen.append(tokens)
        return self.gpt(tokens)


def next_token_loss(fn) -> None:
    """Exercise 1.2: the next-token loss, inputs and targets shifted by one."""
    model = _Recorder()
    window = torch.randint(0, 7, (4, 10), generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        got = call("1.2", fn, model, window)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(f"Exercise 1.2: return one number, the MEAN loss over all positions and "
                             f"sequences (a 0-d tensor), got {shape}")
    if not model.seen:
        raise AssertionError("Exercise 1.2: call the model (logits_fn) on the inputs to get the logits.")
    seen = model.seen[0]
    if seen.shape == window.shape:
        raise AssertionError("Exercise 1.2: the model read the whole window (B, T + 1). Feed it window[:, :-1]: "
                             "the last token has nothing after it to predict.")
    if seen.shape == (4, 9) and torch.equal(seen, window[:, 1:]):
        raise AssertionError("Exercise 1.2: the shift runs backwards: inputs are window[:, :-1] and targets "
                             "window[:, 1:], so that position t predicts token t + 1.")
    with torch.no_grad():
        want = ar.next_token_loss(model.gpt, window).item()
        logits = model.gpt(window[:, :-1])
        flat = logits.reshape(-1, 7)
        same_position = F.cross_entropy(flat, window[:, :-1].reshape(-1)).item()
        summed = F.cross_entropy(flat, window[:, 1:].reshape(-1), reduction="sum").item()
    value = float(got)
    if math.isclose(value, same_position, rel_tol=1e-4):
        raise AssertionError("Exercise 1.2: the targets are the inputs themselves, so the model is asked to "
                             "copy the current token. Targets are the NEXT tokens: window[:, 1:].")
    if math.isclose(value, want / math.log(2), rel_tol=1e-4):
        raise AssertionError("Exercise 1.2: this is in bits; the loss is in nats (natural log), as F.cross_entropy gives.")
    if math.isclose(value, summed, rel_tol=1e-4):
        raise AssertionError("Exercise 1.2: you sum over positions; average instead (F.cross_entropy's default), "
                             "so the loss does not grow with batch size and length.")
    if math.isclose(value, -want, rel_tol=1e-4):
        raise AssertionError("Exercise 1.2: the sign is flipped: the loss is the NEGATIVE log-likelihood.")
    if not math.isclose(value, want, rel_tol=1e-4):
        raise AssertionError(
            f"Exercise 1.2: your loss is {value:.4f}, expected {want:.4f}. F.cross_entropy wants logits of "
            "shape (N, V) and targets (N,): flatten (B, T, V) -> (B * T, V) and (B, T) -> (B * T,).")
    passed(f"next-token loss is right ({want:.3f} nats per token for this untrained model; log 7 = {math.log(7):.3f})")


# ----------------------------------------------------------------------------- exercise 1.3

_PROBE_LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def _frequencies(fn, n: int, **kwargs) -> torch.Tensor:
    logits = _PROBE_LOGITS.expand(n, -1).clone()
    got = call("1.3", fn, logits, generator=torch.Generator().manual_seed(13), **kwargs)
    if not isinstance(got, torch.Tensor) or got.shape != (n,):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(f"Exercise 1.3: return one token id per row of logits, shape ({n},), got {shape}")
    if got.is_floating_point():
        raise AssertionError(f"Exercise 1.3: return token ids as integers (torch.long), got {got.dtype}")
    if got.min() < 0 or got.max() >= len(_PROBE_LOGITS):
        raise AssertionError("Exercise 1.3: token ids must lie in [0, V): sample indices, not probabilities")
    return torch.bincount(got, minlength=len(_PROBE_LOGITS)).float() / n


def _expected(temperature: float, top_k=None) -> torch.Tensor:
    logits = _PROBE_LOGITS / temperature
    if top_k is not None:
        logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], float("-inf"))
    return logits.softmax(-1)


def sample_next(fn) -> None:
    """Exercise 1.3: sampling with temperature and top-k."""
    n, tol = 20000, 0.02   # frequencies of 20000 draws lie within 0.02 of the truth (more than 5 std)
    plain = _frequencies(fn, n, temperature=1.0)
    if plain.max() == 1.0:
        raise AssertionError("Exercise 1.3: every row gave the same token: that is greedy decoding (argmax). "
                             "Draw from the distribution with torch.multinomial(probs, 1, generator=generator).")
    if not torch.allclose(plain, _expected(1.0), atol=tol):
        raise AssertionError(f"Exercise 1.3: at temperature 1 token frequencies are {plain.numpy().round(3)}, "
                             f"expected softmax(logits) = {_expected(1.0).numpy().round(3)}.")
    cold = _frequencies(fn, n, temperature=0.5)
    if torch.allclose(cold, _expected(1.0), atol=tol):
        raise AssertionError("Exercise 1.3: the temperature has no effect. Divide the LOGITS by it before the "
                             "softmax (dividing probabilities and renormalising changes nothing).")
    if torch.allclose(cold, _expected(2.0), atol=tol):
        raise AssertionError("Exercise 1.3: temperature 0.5 made the distribution flatter: divide the logits "
                             "by the temperature, do not multiply.")
    if not torch.allclose(cold, _expected(0.5), atol=tol):
        raise AssertionError(f"Exercise 1.3: at temperature 0.5 frequencies are {cold.numpy().round(3)}, "
                             f"expected softmax(logits / 0.5) = {_expected(0.5).numpy().round(3)}.")
    top = _frequencies(fn, n, temperature=1.0, top_k=3)
    if top[3:].sum() > 0:
        if top[:3].sum() == 0:
            raise AssertionError("Exercise 1.3: top-k kept the k LEAST likely tokens; keep the largest logits.")
        raise AssertionError(f"Exercise 1.3: with top_k=3 only the 3 most likely tokens may appear, "
                             f"got frequencies {top.numpy().round(3)}. Set the other logits to -inf.")
    if not torch.allclose(top, _expected(1.0, 3), atol=tol):
        raise AssertionError(f"Exercise 1.3: with top_k=3 frequencies are {top.numpy().round(3)}, expected "
                             f"{_expected(1.0, 3).numpy().round(3)}: the kept tokens keep their relative odds.")
    if not torch.equal(*(call("1.3", fn, _PROBE_LOGITS.expand(50, -1).clone(),
                              generator=torch.Generator().manual_seed(5)) for _ in range(2))):
        raise AssertionError("Exercise 1.3: the same generator seed gave different tokens: pass `generator` on "
                             "to torch.multinomial so that samples are reproducible.")
    passed("sampling follows softmax(logits / T), top-k keeps the k most likely, and a seed reproduces it")


# ----------------------------------------------------------------------------- exercises 1.4 and 1.5

def _images(seed: int, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 8, 8, generator=g) < 0.4).float()


def image_to_tokens(fn) -> None:
    """Exercise 1.4: a binary image as a sequence of pixel tokens in raster order."""
    x = _images(14)
    x[0] = 0
    x[0, 0, 0, 1] = 1  # first row, second column: token 1 of 64
    got = call("1.4", fn, x)
    want = ar.image_to_tokens(x)
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"Exercise 1.4: return a tensor, got {type(got).__name__}")
    if got.shape != want.shape:
        raise AssertionError(f"Exercise 1.4: tokens should have shape (N, H * W) = {tuple(want.shape)}, got "
                             f"{tuple(got.shape)}: one sequence of 64 pixels per image (flatten(start_dim=1)).")
    if got.is_floating_point():
        raise AssertionError(f"Exercise 1.4: tokens index embeddings, so they must be integers (.long()), "
                             f"got {got.dtype}")
    if torch.equal(got, x.transpose(-2, -1).flatten(start_dim=1).long()):
        raise AssertionError("Exercise 1.4: you read the image column by column. Raster order is row by row, "
                             "left to right, like text: pixel (row r, column c) is token 8 r + c.")
    if not torch.equal(got, want):
        raise AssertionError("Exercise 1.4: the tokens differ from the pixels in raster order: pixel "
                             "(row r, column c) should become token number 8 r + c, with value 0 or 1.")
    passed("images become 64-token sequences in raster order")


def bits_per_dim(fn) -> None:
    """Exercise 1.5: exact log-likelihood of pixel sequences, in bits per dimension."""
    g = torch.Generator().manual_seed(15)
    logits = torch.randn(5, 64, 2, generator=g)
    tokens = ar.image_to_tokens(_images(16))
    got = expect_tensor("1.5", "bits_per_dim(logits, tokens)", call("1.5", fn, logits, tokens), (5,))
    want = ar.bits_per_dim(logits, tokens)
    nats_total = ar.sequence_nll(logits, tokens)
    for wrong, message in [
        (-want, "the sign is flipped: return the NEGATIVE log-likelihood, which is >= 0."),
        (nats_total / 64, "these are nats per pixel: divide by ln 2 as well to get bits."),
        (nats_total, "this is the total in nats per image: divide by the number of pixels D and by ln 2."),
        (nats_total / math.log(2), "this is bits per image: divide by the number of pixels D = 64 too."),
        (ar.sequence_nll(logits.flip(-1), tokens) / (64 * math.log(2)),
         "you pick the probability of the wrong value: gather log p at the index of the TOKEN that occurred."),
    ]:
        if _close(got, wrong):
            raise AssertionError(f"Exercise 1.5: {message}")
    if not _close(got, want):
        raise AssertionError(
            f"Exercise 1.5: for the first image you give {got[0]:.4f} bits/dim, expected {want[0]:.4f}. "
            "Take log_softmax over the last axis, gather the log-probability of each token, sum over the "
            "positions, negate, divide by D ln 2.")
    passed("bits per dimension are right: -sum log p(x_i | x_<i) / (D ln 2)")
