"""The checks of lab 01 pass on the reference, fail on a stub, and name each typical mistake."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from gencourse import autoregressive as ar
from gencourse.checks import autoregressive as checks


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise 1.k: not written")


@pytest.mark.parametrize("check, reference", [
    (checks.attention, ar.attention),
    (checks.next_token_loss, ar.next_token_loss),
    (checks.sample_next, ar.sample_next),
    (checks.image_to_tokens, ar.image_to_tokens),
    (checks.bits_per_dim, ar.bits_per_dim),
])
def test_reference_passes_and_stub_fails(check, reference, capsys):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    check(reference)
    assert torch.equal(torch.get_rng_state(), before), "a check must leave the learner's random state alone"
    assert capsys.readouterr().out.startswith("\u2713")
    with pytest.raises(AssertionError, match=r"Exercise 1\.\d is not done yet"):
        check(stub)


# ----------------------------------------------------------------------------- attention

def _masked(q, k, v, scale, fill=float("-inf"), mask="tril", dim=-1, after=False):
    T = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / scale
    allowed = torch.ones(T, T, dtype=torch.bool).tril() if mask == "tril" else torch.ones(T, T, dtype=torch.bool).triu()
    if after:
        return scores.softmax(-1).masked_fill(~allowed, 0.0) @ v
    if mask is not None:
        scores = scores.masked_fill(~allowed, fill)
    return scores.softmax(dim).nan_to_num() @ v


@pytest.mark.parametrize("wrong, message", [
    (lambda q, k, v: _masked(q, k, v, math.sqrt(q.shape[-1]), mask=None), "future tokens leak"),
    (lambda q, k, v: _masked(q, k, v, math.sqrt(q.shape[-1]), mask="triu"), "wrong way"),
    (lambda q, k, v: _masked(q, k, v, 1.0), "not scaled"),
    (lambda q, k, v: _masked(q, k, v, q.shape[-1]), "divide the scores by d"),
    (lambda q, k, v: _masked(q, k, v, math.sqrt(q.shape[-1]), fill=0.0), "-inf"),
    (lambda q, k, v: _masked(q, k, v, math.sqrt(q.shape[-1]), dim=-2), "wrong axis"),
    (lambda q, k, v: _masked(q, k, v, math.sqrt(q.shape[-1]), after=True), "AFTER the softmax"),
    (lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1), "attention weights"),
    (lambda q, k, v: ar.attention(q, k, v) + 0.1, "differs"),
])
def test_attention_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.attention(wrong)


# ----------------------------------------------------------------------------- next-token loss

def _ce(logits, targets, **kw):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), **kw)


@pytest.mark.parametrize("wrong, message", [
    (lambda f, w: _ce(f(w), w), "read the whole window"),
    (lambda f, w: _ce(f(w[:, 1:]), w[:, :-1]), "runs backwards"),
    (lambda f, w: _ce(f(w[:, :-1]), w[:, :-1]), "copy the current token"),
    (lambda f, w: _ce(f(w[:, :-1]), w[:, 1:]) / math.log(2), "bits"),
    (lambda f, w: _ce(f(w[:, :-1]), w[:, 1:], reduction="sum"), "you sum"),
    (lambda f, w: -_ce(f(w[:, :-1]), w[:, 1:]), "sign"),
    (lambda f, w: _ce(f(w[:, :-1]), w[:, 1:], reduction="none"), "return one number"),
    (lambda f, w: torch.tensor(1.0), "call the model"),
])
def test_next_token_loss_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.next_token_loss(wrong)


# ----------------------------------------------------------------------------- sampling

def _sampler(transform=lambda l, t: l / t, top="largest", use_generator=True):
    def sample(logits, temperature=1.0, top_k=None, generator=None):
        logits = transform(logits, temperature)
        if top_k is not None:
            vals = logits.topk(top_k, dim=-1, largest=top == "largest").values[:, -1:]
            keep = logits >= vals if top == "largest" else logits <= vals
            logits = logits.masked_fill(~keep, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=generator if use_generator else None).squeeze(-1)
    return sample


@pytest.mark.parametrize("wrong, message", [
    (lambda logits, temperature=1.0, top_k=None, generator=None: logits.argmax(-1), "greedy"),
    (_sampler(lambda l, t: l * t), "do not multiply"),
    (_sampler(lambda l, t: l), "no effect"),
    (_sampler(top="smallest"), "LEAST likely"),
    (_sampler(use_generator=False), "generator"),
    (lambda logits, temperature=1.0, top_k=None, generator=None: logits.softmax(-1), "one token id per row"),
    (_sampler(lambda l, t: l + t), "temperature"),
])
def test_sample_next_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.sample_next(wrong)


def test_sample_next_ignoring_top_k_is_caught():
    def no_top_k(logits, temperature=1.0, top_k=None, generator=None):
        return ar.sample_next(logits, temperature, None, generator=generator)
    with pytest.raises(AssertionError, match="top_k=3"):
        checks.sample_next(no_top_k)


# ----------------------------------------------------------------------------- images

@pytest.mark.parametrize("wrong, message", [
    (lambda x: x.flatten(start_dim=1), "integers"),
    (lambda x: x.transpose(-2, -1).flatten(start_dim=1).long(), "column by column"),
    (lambda x: x.long(), r"shape \(N, H \* W\)"),
    (lambda x: (1 - x).flatten(start_dim=1).long(), "differ"),
])
def test_image_to_tokens_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.image_to_tokens(wrong)


def _nll(logits, tokens):
    return -logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1).sum(1)


@pytest.mark.parametrize("wrong, message", [
    (lambda l, t: -ar.bits_per_dim(l, t), "sign"),
    (lambda l, t: _nll(l, t) / t.shape[1], "nats per pixel"),
    (lambda l, t: _nll(l, t), "total in nats"),
    (lambda l, t: _nll(l, t) / math.log(2), "bits per image"),
    (lambda l, t: _nll(l.flip(-1), t) / (t.shape[1] * math.log(2)), "wrong value"),
    (lambda l, t: _nll(l, t)[:, None], "shape"),
    (lambda l, t: ar.bits_per_dim(l, t) * 1.1, "expected"),
])
def test_bits_per_dim_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.bits_per_dim(wrong)


def test_attention_check_names_the_leaking_positions():
    import math

    def off_by_one(q, k, v):  # lets each position see one token ahead
        T = q.shape[-2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        allowed = torch.ones(T, T, dtype=torch.bool).tril(1)
        return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v

    with pytest.raises(AssertionError, match="lets position 0 attend to position 1"):
        checks.attention(off_by_one)


def test_a_wrong_attention_names_the_position_by_its_dimensions():
    where = r"at position \(batch \d, head \d, position \d, feature \d\) of the output you give \S+, expected \S+\."
    with pytest.raises(AssertionError, match=where + " It should be softmax"):
        checks.attention(lambda q, k, v: ar.attention(q, k, v) + 0.1)


def test_a_wrong_loss_is_reported_with_its_own_value():
    with pytest.raises(AssertionError, match="your loss is") as error:
        checks.next_token_loss(lambda f, w: 2 * ar.next_token_loss(f, w))
    got, want = (float(v) for v in re.search(r"your loss is (\S+), expected (\S+)\. ", str(error.value)).groups())
    assert got == pytest.approx(2 * want, rel=1e-3)



# ----------------------------------------------------------------------------- 1.6 to 1.8: build the model

from checks_contract import fails_untouched, passes_quietly  # noqa: E402


class Heads(torch.nn.Module):
    """A right answer to exercise 1.6, with switches for the usual slips."""

    def __init__(self, n_embd, n_head, causal=True, transpose=True, project=True):
        super().__init__()
        self.n_head, self.causal, self.transpose, self.project = n_head, causal, transpose, project
        self.qkv = torch.nn.Linear(n_embd, 3 * n_embd)
        self.proj = torch.nn.Linear(n_embd, n_embd)

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, L, self.n_head, C // self.n_head) for t in (q, k, v))
        if self.transpose:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        y = ar.attention(q, k, v, causal=self.causal)
        y = (y.transpose(1, 2) if self.transpose else y).reshape(B, L, C)
        return self.proj(y) if self.project else y


def loop(model, tokens, steps, sample, position=-1, crop=True, whole=True):
    start = tokens
    with torch.no_grad():
        for _ in range(steps):
            context = tokens[:, -model.config.block_size:] if crop else tokens
            tokens = torch.cat([tokens, sample(model(context)[:, position])[:, None]], dim=1)
    return tokens if whole else tokens[:, start.shape[1]:]


def top_p(logits, p, strict=False, ascending=False, sort_back=True):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=not ascending)
    mass = probs.cumsum(-1) if strict else probs.cumsum(-1) - probs
    drop = mass > p if strict else mass >= p
    if not sort_back:
        return logits.sort(dim=-1, descending=True).values.masked_fill(drop, float("-inf"))
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


@pytest.mark.parametrize("check, right, exercise", [
    (checks.multi_head_attention, Heads, "1.6"),
    (checks.generate, loop, "1.7"),
    (checks.nucleus, top_p, "1.8"),
])
def test_new_exercises_pass_on_a_right_answer_and_fail_untouched(check, right, exercise, capsys):
    passes_quietly(check, right, capsys)
    fails_untouched(check, exercise)


@pytest.mark.parametrize("wrong, message", [
    (lambda C, H: Heads(C, H, causal=False), "no causal mask"),
    (lambda C, H: Heads(C, H, transpose=False), "head axis must come before the sequence axis"),
    (lambda C, H: Heads(C, H, project=False), "output projection is missing"),
    (lambda C, H: torch.nn.Linear(C, C), "exactly two linear layers"),
    (lambda C, H: object(), "should build an nn.Module"),
])
def test_multi_head_attention_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.multi_head_attention(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda m, t, s, f: loop(m, t, s, f, position=0), "FIRST position"),
    (lambda m, t, s, f: loop(m, t, s, f, crop=False), "context"),
    (lambda m, t, s, f: loop(m, t, s, f, whole=False), "only the new tokens"),
    (lambda m, t, s, f: torch.cat([t, f(m(t)[:, -1]).repeat(s, 1).T], dim=1), "once per token"),
    (lambda m, t, s, f: loop(m, t, s, lambda logits: f(m(t))), "LAST position only"),
])
def test_sampling_loop_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.generate(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda logits, p: top_p(logits, p, strict=True), "carries the total past p"),
    (lambda logits, p: top_p(logits, p, ascending=True), "LEAST likely"),
    (lambda logits, p: top_p(logits, p, sort_back=False), "vocabulary order"),
    (lambda logits, p: ar.next_token_probs(logits, top_p=p), "you return probabilities"),
    (lambda logits, p: logits, "the nucleus is"),
])
def test_nucleus_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.nucleus(wrong)
