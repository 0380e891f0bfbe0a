"""Checks of lab 01, "Autoregressive transformers": attention, the next-token loss, sampling, images as tokens.

Each check runs the learner's function and the reference of gencourse.autoregressive on the same seeded
inputs, and when they disagree, tries the usual mistakes one by one to say which one it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import autoregressive as ar
from . import (call, close, describe, expect_tensor, fixed, graded, mismatch, observe, passed,  # noqa: F401
               recognise, seeded, use)  # use: for the lab


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


# ----------------------------------------------------------------------------- exercise 1.6: a multi-head module

_C, _H = 16, 4     # the module under test: 16 wide, 4 heads of 4


def _heads_reference():
    config = ar.GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=_H, n_embd=_C)
    return fixed(lambda: ar.CausalSelfAttention(config).eval(), seed=16)


def _heads_variant(ref, x, *, causal=True, split="heads", merge="heads", scale="head", project=True):
    """What multi-head attention with one slip computes, with the reference's weights."""
    B, L, C = x.shape
    q, k, v = ref.qkv(x).split(C, dim=2)
    if split == "heads":
        q, k, v = (t.view(B, L, _H, C // _H).transpose(1, 2) for t in (q, k, v))     # (B, H, L, d)
    elif split == "no transpose":
        q, k, v = (t.view(B, L, _H, C // _H) for t in (q, k, v))                     # heads as positions
    else:
        q, k, v = (t[:, None] for t in (q, k, v))                                     # one head of width C
    d = C // _H if scale == "head" else C
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if causal:
        n = scores.shape[-1]
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    y = scores.softmax(-1) @ v
    if split == "heads":
        y = y.transpose(1, 2).reshape(B, L, C) if merge == "heads" else y.reshape(B, L, C)
    else:
        y = y.reshape(B, L, C)
    return ref.proj(y) if project else y


def _heads_slips(ref, x) -> list:
    with torch.no_grad():
        return [
            (_heads_variant(ref, x, causal=False),
             "future positions leak into the past: your module has no causal mask. Each head's scores need -inf "
             "above the diagonal (your attention() of exercise 1.1 does this)."),
            (_heads_variant(ref, x, split="no transpose"),
             "after view(B, L, H, d_k) the head axis must come before the sequence axis (transpose(1, 2)): "
             "as it is, attention mixes the heads of one position instead of the positions of one head."),
            (_heads_variant(ref, x, merge="no transpose"),
             "the heads are put back together in the wrong order: move the head axis back after the sequence "
             "axis (transpose(1, 2)) before reshaping (B, H, L, d_k) to (B, L, C)."),
            (_heads_variant(ref, x, split="one head"),
             f"you attend with ONE head of width C = {_C}; split the queries, keys and values into n_head = "
             f"{_H} heads of width d_k = C / n_head and attend in each separately."),
            (_heads_variant(ref, x, scale="all"),
             f"the scores are scaled by sqrt(C) = sqrt({_C}); each head's dot products have d_k = C / n_head = "
             f"{_C // _H} terms: scale by sqrt(d_k)."),
            (_heads_variant(ref, x, project=False),
             "the output projection is missing: after joining the heads, apply self.proj, which mixes what the "
             "heads found."),
        ]


def _layers(module) -> dict | None:
    """{parameter name: shape} of a module, None when it is not an nn.Module."""
    if not isinstance(module, torch.nn.Module):
        return None
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


@graded("gencourse.autoregressive.CausalSelfAttention")
def multi_head_attention(cls) -> None:
    """Exercise 1.6: a module cls(n_embd, n_head) with layers qkv and proj, (B, L, C) -> (B, L, C), causal."""
    ref = _heads_reference()
    x = torch.randn(2, 6, _C, generator=seeded(17))
    module = fixed(lambda: call("1.6", cls, _C, _H), seed=16)   # its own initial weights: the learner's seed stays
    layers = observe("the module's parameters", lambda: _layers(module))
    if layers is None:
        raise AssertionError(f"Exercise 1.6: your class, called with ({_C}, {_H}), should build an nn.Module "
                             f"(subclass torch.nn.Module and call super().__init__()), got {describe(module)}")
    want_layers = {name: tuple(p.shape) for name, p in ref.named_parameters()}
    if layers != want_layers:
        raise AssertionError(f"Exercise 1.6: the module should hold exactly two linear layers, qkv ({_C} -> "
                             f"{3 * _C}: the queries, keys and values of all heads at once) and proj ({_C} -> {_C}), "
                             f"with biases; its parameters are {layers}, expected {want_layers}.")

    def your_module(inputs):
        module.load_state_dict(ref.state_dict())     # the reference's weights, so that outputs compare
        module.eval()
        with torch.no_grad():
            return module(inputs)
    your_module.__name__ = "your module's forward"   # what the messages call it

    got = expect_tensor("1.6", "the module's output", call("1.6", your_module, x), tuple(x.shape))
    with torch.no_grad():
        want = ref(x)
    if not close(got, want):
        raise mismatch("1.6", "the output", got, want, "with the reference's weights", _heads_slips(ref, x),
                       dims=("batch", "position", "feature"),
                       hint="Split qkv(x) into q, k, v; give each the shape (B, n_head, L, d_k); attend with the "
                            "causal mask; join the heads back into (B, L, C); apply proj.")
    later = x.clone()
    later[:, 4:] += 3.0
    again = expect_tensor("1.6", "the module's output", call("1.6", your_module, later), tuple(x.shape))
    if not close(again[:, :4], got[:, :4]):
        raise AssertionError("Exercise 1.6: changing the tokens at positions 4 and 5 changed the outputs at "
                             "positions 0-3: the future leaks into the past. Mask every head's scores.")
    passed("multi-head causal attention is right: heads split, attended, joined and projected, no leak")


# ----------------------------------------------------------------------------- exercise 1.7: the sampling loop

_LOOP_CONFIG = dict(vocab_size=7, block_size=6, n_layer=1, n_head=2, n_embd=16)
_PROMPT_LEN, _STEPS = 2, 9          # 11 tokens in all: past the context of 6, so the prefix must be cropped


def _loop_parts():
    model = fixed(lambda: ar.GPT(ar.GPTConfig(**_LOOP_CONFIG)).eval(), seed=18)
    prompt = torch.randint(0, 7, (3, _PROMPT_LEN), generator=seeded(19))
    return model, prompt


def _loop_variant(model, prompt, sample, *, position=-1, crop=True):
    """What a sampling loop with one slip returns."""
    tokens = prompt
    with torch.no_grad():
        for _ in range(_STEPS):
            context = tokens[:, -model.config.block_size:] if crop else tokens
            tokens = torch.cat([tokens, sample(model(context)[:, position])[:, None]], dim=1)
    return tokens


def _sampler(seed: int):
    g = seeded(seed)
    return lambda logits: ar.sample_next(logits, generator=g)


@graded("gencourse.autoregressive.sample_loop", "gencourse.autoregressive.generate",
        "gencourse.autoregressive.GPT.sample")
def generate(fn) -> None:
    """Exercise 1.7: fn(model, tokens, steps, sample) appends `steps` tokens, one network call per token."""
    model, prompt = _loop_parts()
    seen = []
    draw = _sampler(20)

    def sample(logits):
        seen.append(tuple(logits.shape))
        if logits.dim() != 2:
            raise ValueError(f"sample(...) wants the logits of the LAST position only, shape (B, V) = (3, 7), "
                             f"got {tuple(logits.shape)}: take model(context)[:, -1]")
        return draw(logits)

    got = call("1.7", fn, model, prompt.clone(), _STEPS, sample)
    shapes = observe("the logits your loop sampled from", lambda: list(seen))
    want = ar.sample_loop(model, prompt, _STEPS, _sampler(20))
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (3, _STEPS) and torch.equal(got, want[:, _PROMPT_LEN:]):
        raise AssertionError("Exercise 1.7: you return only the new tokens; return the whole sequences, the "
                             f"prompt included: shape (3, {_PROMPT_LEN} + {_STEPS}).")
    if len(shapes) != _STEPS:
        raise AssertionError(f"Exercise 1.7: for {_STEPS} new tokens, call sample(...) once per token, "
                             f"{_STEPS} times in all; your loop called it {len(shapes)} times.")
    if any(shape != (3, 7) for shape in shapes):
        raise AssertionError(f"Exercise 1.7: sample(...) wants the logits of the LAST position only, shape "
                             f"(B, V) = (3, 7); your loop passed shapes {sorted(set(shapes))}. Take "
                             "model(context)[:, -1].")
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        raise AssertionError(f"Exercise 1.7: return the sequences as one tensor of shape {tuple(want.shape)} "
                             f"(the prompt, then the new tokens), got {describe(got)}.")
    if not torch.equal(got[:, :_PROMPT_LEN], prompt):
        raise AssertionError("Exercise 1.7: the returned sequences should start with the prompt, unchanged.")
    if not torch.equal(got, want):
        first = _loop_variant(model, prompt, _sampler(20), position=0)
        if torch.equal(got, first):
            raise AssertionError("Exercise 1.7: you sample from the logits of the FIRST position, [:, 0]: the "
                                 "next token is predicted by the last one, [:, -1].")
        column = int((got != want).any(dim=0).nonzero()[0])
        raise AssertionError(f"Exercise 1.7: your sequences first differ from the reference's at position "
                             f"{column}. Each step: crop the context to its last block_size tokens, run the "
                             "model, take the last position's logits, sample one token, append it.")
    passed(f"the sampling loop is right: {_STEPS} steps, one sample per step, the context cropped past "
           f"{_LOOP_CONFIG['block_size']} tokens")


# ----------------------------------------------------------------------------- exercise 1.8: nucleus (top-p)

def _nucleus_cases():
    g = seeded(21)
    sharp = torch.tensor([[4.0, 2.5, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0]])
    return [(torch.randn(4, 10, generator=g) * 0.5, 0.3), (torch.randn(6, 10, generator=g) * 2, 0.9),
            (torch.randn(4, 10, generator=g), 0.5),
            (sharp, 0.5), (sharp, 0.999), (torch.randn(3, 10, generator=g) * 3, 1.0)]


def _nucleus_slips(logits, p) -> list:
    probs = logits.softmax(-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    inside = sorted_probs.cumsum(-1)
    strict = (inside > p).scatter(-1, order, inside > p)
    ascending_probs, up = probs.sort(dim=-1)
    before = ascending_probs.cumsum(-1) - ascending_probs
    low = (before >= p).scatter(-1, up, before >= p)
    kept = ar.next_token_probs(logits, top_p=p)
    slips = [
        (logits.masked_fill(strict, float("-inf")),
         "you drop the token whose probability carries the total past p; nucleus sampling keeps the SMALLEST "
         "set whose probability reaches p, so that token stays: drop a token only when the tokens before it "
         "already reach p."),
        (logits.masked_fill(low, float("-inf")),
         "you keep the LEAST likely tokens: sort the probabilities in descending order."),
        (logits.sort(dim=-1, descending=True).values.masked_fill(
            (probs.sort(dim=-1, descending=True).values.cumsum(-1) - sorted_probs) >= p, float("-inf")),
         "the logits come back sorted; put them back in vocabulary order (scatter, or index with the sort's "
         "order) so that position i is still token i."),
        (kept, "you return probabilities; return the LOGITS, with -inf for the dropped tokens (the sampler takes "
               "the softmax)."),
    ]
    return [(value, message) for value, message in slips if not torch.equal(value, logits)]   # only real changes


@graded("gencourse.autoregressive.next_token_probs", "gencourse.autoregressive.nucleus")
def nucleus(fn) -> None:
    """Exercise 1.8: logits with -inf outside the smallest set of most likely tokens whose probability >= p."""
    for logits, p in _nucleus_cases():
        got = call("1.8", fn, logits.clone(), p)
        where = f"for p = {p} and logits of shape {tuple(logits.shape)}"
        if not isinstance(got, torch.Tensor) or got.shape != logits.shape:
            raise AssertionError(f"Exercise 1.8: return logits of the same shape {tuple(logits.shape)}, with "
                                 f"-inf where a token is dropped; got {describe(got)} {where}.")
        want = ar.nucleus(logits, p)
        same_mask = torch.equal(torch.isneginf(got), torch.isneginf(want))
        if not same_mask or not close(got.masked_fill(torch.isneginf(got), 0.0),
                                      want.masked_fill(torch.isneginf(want), 0.0)):
            message = recognise(got.nan_to_num(neginf=-1e9), want.nan_to_num(neginf=-1e9),
                                [(v.nan_to_num(neginf=-1e9), m) for v, m in _nucleus_slips(logits, p)])
            if message is not None:
                raise AssertionError(f"Exercise 1.8: {message} (found {where})")
            row = int((torch.isneginf(got) != torch.isneginf(want)).any(dim=-1).float().argmax())
            raise AssertionError(f"Exercise 1.8: {where}, row {row} keeps tokens "
                                 f"{(~torch.isneginf(got[row])).nonzero().flatten().tolist()}; the nucleus is "
                                 f"{(~torch.isneginf(want[row])).nonzero().flatten().tolist()}. Sort by "
                                 "probability, add up, keep tokens until the sum reaches p, leave the kept "
                                 "logits unchanged.")
    passed("top-p is right: the smallest set of likely tokens that reaches p, logits kept, the rest -inf")
