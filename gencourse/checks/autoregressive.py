"""Checks of lab 01, "Autoregressive transformers": attention, the next-token loss, sampling, images as tokens.

Each check runs the learner's function and the reference of gencourse.autoregressive on the same seeded
inputs, and when they disagree, tries the usual mistakes one by one to say which one it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import autoregressive as ar
from . import call, close, describe, expect_tensor, fixed, graded, mismatch, observe, passed, recognise, seeded


def _qkv(seed: int, shape=(2, 3, 5, 8)):
    g = seeded(seed)
    return tuple(torch.randn(shape, generator=g) for _ in range(3))


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


def _leak(leak: tuple[int, int]) -> AssertionError:
    return AssertionError(f"Exercise 1.1: your mask lets position {leak[0]} attend to position {leak[1]}: "
                          "changing a later token changed an earlier output. Keys j > t must get -inf.")


@graded("gencourse.autoregressive.attention")
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
    if leak or not close(got, want):
        # a leak fails even when this output is right (e.g. a mask that is only right for this T)
        where = f" (for example, your mask lets position {leak[0]} attend to position {leak[1]})" if leak else ""
        slips = [(wrong, message.rstrip(".") + where + ".") for wrong, message in _attention_mistakes(q, k, v)]
        if leak and recognise(got, want, slips) is None:
            raise _leak(leak)
        raise mismatch("1.1", "the output", got, want, slips=slips, dims=("batch", "head", "position", "feature"),
                       hint="It should be softmax(q k^T / sqrt(d) + mask) v. Check the steps: scores, mask with "
                            "-inf, softmax over the last axis, then the product with v.")
    passed("causal attention is right, and the future does not leak into the past")


# ----------------------------------------------------------------------------- exercise 1.2

class _Recorder(torch.nn.Module):
    """A tiny GPT that remembers the inputs it was given."""

    def __init__(self):
        super().__init__()
        self.gpt = fixed(lambda: ar.GPT(ar.GPTConfig(vocab_size=7, block_size=12, n_layer=1, n_head=2, n_embd=16)))
        self.seen = []

    def forward(self, tokens):
        self.seen.append(tokens)
        return self.gpt(tokens)


@graded("gencourse.autoregressive.next_token_loss")
def next_token_loss(fn) -> None:
    """Exercise 1.2: the next-token loss, inputs and targets shifted by one."""
    model = _Recorder()
    window = torch.randint(0, 7, (4, 10), generator=seeded(12))
    with torch.no_grad():
        got = call("1.2", fn, model, window)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise AssertionError(f"Exercise 1.2: return one number, the MEAN loss over all positions and "
                             f"sequences (a 0-d tensor), got {describe(got)}")
    seen = observe("the model's first input", lambda: model.seen[0] if model.seen else None)
    if seen is None:
        raise AssertionError("Exercise 1.2: call the model (logits_fn) on the inputs to get the logits.")
    if seen.shape == window.shape:
        raise AssertionError("Exercise 1.2: the model read the whole window (B, T + 1). Feed it window[:, :-1]: "
                             "the last token has nothing after it to predict.")
    if seen.shape == (4, 9) and torch.equal(seen, window[:, 1:]):
        raise AssertionError("Exercise 1.2: the shift runs backwards: inputs are window[:, :-1] and targets "
                             "window[:, 1:], so that position t predicts token t + 1.")
    with torch.no_grad():
        want = ar.next_token_loss(model.gpt, window)
        flat = model.gpt(window[:, :-1]).reshape(-1, 7)
        slips = [
            (F.cross_entropy(flat, window[:, :-1].reshape(-1)),
             "the targets are the inputs themselves, so the model is asked to copy the current token. Targets "
             "are the NEXT tokens: window[:, 1:]."),
            (want / math.log(2), "this is in bits; the loss is in nats (natural log), as F.cross_entropy gives."),
            (F.cross_entropy(flat, window[:, 1:].reshape(-1), reduction="sum"),
             "you sum over positions; average instead (F.cross_entropy's default), so the loss does not grow "
             "with batch size and length."),
            (-want, "the sign is flipped: the loss is the NEGATIVE log-likelihood."),
        ]
    if not close(got, want):
        raise mismatch("1.2", "your loss", got, want, slips=slips,
                       hint="F.cross_entropy wants logits of shape (N, V) and targets (N,): flatten "
                            "(B, T, V) -> (B * T, V) and (B, T) -> (B * T,).")
    passed(f"next-token loss is right ({want:.3f} nats per token for this untrained model; "
           f"log 7 = {math.log(7):.3f})")


# ----------------------------------------------------------------------------- exercise 1.3

_PROBE_LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
_DRAWS, _FREQ_TOL = 20000, 0.02   # frequencies of 20000 draws lie within 0.02 of the truth (more than 5 std)


def _frequencies(fn, **kwargs) -> torch.Tensor:
    n = _DRAWS
    got = call("1.3", fn, _PROBE_LOGITS.expand(n, -1).clone(), generator=seeded(13), **kwargs)
    if not isinstance(got, torch.Tensor) or got.shape != (n,):
        raise AssertionError(f"Exercise 1.3: return one token id per row of logits, shape ({n},), got {describe(got)}")
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


def _expect_frequencies(got, want, where: str, formula: str, slips=()) -> None:
    """Raise unless the frequencies `got` lie within _FREQ_TOL of `want`, naming a slip if recognised."""
    if not close(got, want, rtol=0, atol=_FREQ_TOL):
        raise mismatch("1.3", "the token frequencies", got, want, where, slips, dims=("token",), rtol=0,
                       atol=_FREQ_TOL, hint=f"All of them: {got.numpy().round(3)}, expected {formula} = "
                                            f"{want.numpy().round(3)}.")


@graded("gencourse.autoregressive.sample_next")
def sample_next(fn) -> None:
    """Exercise 1.3: sampling with temperature and top-k."""
    plain = _frequencies(fn, temperature=1.0)
    if plain.max() == 1.0:
        raise AssertionError("Exercise 1.3: every row gave the same token: that is greedy decoding (argmax). "
                             "Draw from the distribution with torch.multinomial(probs, 1, generator=generator).")
    _expect_frequencies(plain, _expected(1.0), "at temperature 1", "softmax(logits)")
    _expect_frequencies(_frequencies(fn, temperature=0.5), _expected(0.5), "at temperature 0.5",
                        "softmax(logits / 0.5)", slips=[
        (_expected(1.0), "the temperature has no effect. Divide the LOGITS by it before the softmax (dividing "
                         "probabilities and renormalising changes nothing)."),
        (_expected(2.0), "temperature 0.5 made the distribution flatter: divide the logits by the temperature, "
                         "do not multiply."),
    ])
    top = _frequencies(fn, temperature=1.0, top_k=3)
    if top[3:].sum() > 0:
        if top[:3].sum() == 0:
            raise AssertionError("Exercise 1.3: top-k kept the k LEAST likely tokens; keep the largest logits.")
        raise AssertionError(f"Exercise 1.3: with top_k=3 only the 3 most likely tokens may appear, "
                             f"got frequencies {top.numpy().round(3)}. Set the other logits to -inf.")
    _expect_frequencies(top, _expected(1.0, 3), "with top_k=3",
                        "softmax(logits) over the 3 kept tokens, which keep their relative odds")
    if not torch.equal(*(call("1.3", fn, _PROBE_LOGITS.expand(50, -1).clone(), generator=seeded(5))
                         for _ in range(2))):
        raise AssertionError("Exercise 1.3: the same generator seed gave different tokens: pass `generator` on "
                             "to torch.multinomial so that samples are reproducible.")
    passed("sampling follows softmax(logits / T), top-k keeps the k most likely, and a seed reproduces it")


# ----------------------------------------------------------------------------- exercises 1.4 and 1.5

def _images(seed: int, n: int = 5) -> torch.Tensor:
    return (torch.rand(n, 1, 8, 8, generator=seeded(seed)) < 0.4).float()


@graded("gencourse.autoregressive.image_to_tokens")
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
    if not close(got, want):
        raise mismatch("1.4", "the tokens", got, want, dims=("image", "token"), slips=[
            (x.transpose(-2, -1).flatten(start_dim=1),
             "you read the image column by column. Raster order is row by row, left to right, like text: "
             "pixel (row r, column c) is token 8 r + c."),
        ], hint="The tokens are the pixels in raster order: pixel (row r, column c) should become token number "
                "8 r + c, with value 0 or 1.")
    passed("images become 64-token sequences in raster order")


@graded("gencourse.autoregressive.bits_per_dim")
def bits_per_dim(fn) -> None:
    """Exercise 1.5: exact log-likelihood of pixel sequences, in bits per dimension."""
    logits = torch.randn(5, 64, 2, generator=seeded(15))
    tokens = ar.image_to_tokens(_images(16))
    got = expect_tensor("1.5", "bits_per_dim(logits, tokens)", call("1.5", fn, logits, tokens), (5,))
    want = ar.bits_per_dim(logits, tokens)
    nats_total = ar.sequence_nll(logits, tokens)
    if not close(got, want):
        raise mismatch("1.5", "the bits per dimension", got, want, dims=("image",), slips=[
            (-want, "the sign is flipped: return the NEGATIVE log-likelihood, which is >= 0."),
            (nats_total / 64, "these are nats per pixel: divide by ln 2 as well to get bits."),
            (nats_total, "this is the total in nats per image: divide by the number of pixels D and by ln 2."),
            (nats_total / math.log(2), "this is bits per image: divide by the number of pixels D = 64 too."),
            (ar.sequence_nll(logits.flip(-1), tokens) / (64 * math.log(2)),
             "you pick the probability of the wrong value: gather log p at the index of the TOKEN that occurred."),
        ], hint="Take log_softmax over the last axis, gather the log-probability of each token, sum over the "
                "positions, negate, divide by D ln 2.")
    passed("bits per dimension are right: -sum log p(x_i | x_<i) / (D ln 2)")
