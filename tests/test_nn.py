"""Unit tests of gencourse.nn: MLP, sinusoidal, time and label embeddings, conv block, tiny UNet."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gencourse import nn as gnn


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny layers gain nothing from a second thread, and on a busy machine two threads per process
    slow them severalfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- MLP

@pytest.mark.parametrize("depth", [1, 2, 4])
def test_mlp_structure(depth):
    m = gnn.MLP(3, 16, 5, depth=depth)
    linears = [l for l in m if isinstance(l, nn.Linear)]
    acts = [l for l in m if isinstance(l, nn.SiLU)]
    assert len(linears) == depth + 1 and len(acts) == depth
    assert [(l.in_features, l.out_features) for l in linears] == [(3, 16)] + [(16, 16)] * (depth - 1) + [(16, 5)]
    assert isinstance(m[-1], nn.Linear)  # no activation after the output layer
    # linear and activation alternate
    assert all(isinstance(m[i], nn.Linear) for i in range(0, len(m), 2))


def test_mlp_forward_shape():
    torch.manual_seed(0)
    m = gnn.MLP(2, 8, 3)
    out = m(torch.randn(7, 2))
    assert out.shape == (7, 3)
    # the output layer is linear: negative outputs are possible
    assert (m(torch.randn(200, 2)) < 0).any()


@pytest.mark.parametrize("kwargs, name, exc", [
    (dict(in_dim=0, hidden=4, out_dim=1), "in_dim", ValueError),
    (dict(in_dim=2, hidden=0, out_dim=1), "hidden", ValueError),
    (dict(in_dim=2, hidden=4, out_dim=-1), "out_dim", ValueError),
    (dict(in_dim=2, hidden=4, out_dim=1, depth=0), "depth", ValueError),
    (dict(in_dim=2.0, hidden=4, out_dim=1), "in_dim", TypeError),
])
def test_mlp_bad_args(kwargs, name, exc):
    with pytest.raises(exc, match=name):
        gnn.MLP(**kwargs)


# ----------------------------------------------------------------------------- embedding

def test_sinusoidal_values():
    emb = gnn.SinusoidalEmbedding(4, max_period=100.0)
    t = torch.tensor([0.0, 1.0, 3.0])
    out = emb(t)
    assert out.shape == (3, 4)
    freqs = torch.tensor([1.0, 100.0 ** -0.5])  # exp(-ln(100) * k / 2), k = 0, 1
    expected = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
    assert torch.allclose(out, expected, atol=1e-6)
    # t = 0: sines 0, cosines 1
    assert torch.equal(out[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_sinusoidal_integer_timesteps_and_codes():
    emb = gnn.SinusoidalEmbedding(32)
    t = torch.arange(50)
    out = emb(t)
    assert out.shape == (50, 32) and out.dtype == torch.float32
    assert torch.allclose(out, emb(t.float()))  # int and float t give the same code
    assert out.abs().max() <= 1.0
    # each (sin, cos) pair lies on the unit circle: every row has squared norm dim/2
    assert torch.allclose(out.square().sum(dim=1), torch.full((50,), 16.0), atol=1e-4)
    # same t, same code; different t, different codes
    assert torch.equal(emb(torch.tensor([7, 7]))[0], emb(torch.tensor([7, 7]))[1])
    dist = torch.cdist(out, out) + torch.eye(50) * 10
    assert dist.min() > 1e-3
    # nearby timesteps get closer codes than distant ones
    assert (out[10] - out[11]).norm() < (out[10] - out[40]).norm()


@pytest.mark.parametrize("dim", [1, 3, 65])
def test_sinusoidal_odd_dim(dim):
    with pytest.raises(ValueError, match="dim must be even"):
        gnn.SinusoidalEmbedding(dim)


def test_sinusoidal_bad_input():
    with pytest.raises(ValueError, match="dim"):
        gnn.SinusoidalEmbedding(0)


@pytest.fixture
def no_value_checks(monkeypatch):
    """Fail if a forward pass calls validate.tensor: forward methods are hot code, and a value check
    (min, max, isfinite) would stall a GPU on every step of a sampling loop."""
    monkeypatch.setattr(gnn.validate, "tensor", lambda *a, **k: pytest.fail("forward must not check values"))


def test_forward_methods_check_no_values(no_value_checks):
    torch.manual_seed(0)
    t = torch.tensor([0, 5, 999])
    assert gnn.SinusoidalEmbedding(8)(t).shape == (3, 8)
    assert gnn.TimeEmbedding(8, 16)(t).shape == (3, 16)
    assert gnn.TinyUNet(base=8, emb_dim=8)(torch.randn(3, 1, 8, 8), t).shape == (3, 1, 8, 8)
    net = gnn.TinyUNet(base=8, emb_dim=8, num_classes=10)
    assert net(torch.randn(3, 1, 8, 8), t, torch.tensor([0, 9, 10])).shape == (3, 1, 8, 8)


# ----------------------------------------------------------------------------- time and label embeddings

def test_time_embedding_is_sinusoidal_features_then_an_mlp():
    torch.manual_seed(0)
    emb = gnn.TimeEmbedding(8, 32)
    assert isinstance(emb[0], gnn.SinusoidalEmbedding) and emb[0].dim == 8
    assert [(l.in_features, l.out_features) for l in emb if isinstance(l, nn.Linear)] == [(8, 32), (32, 32)]
    t = torch.tensor([0, 3, 250])
    out = emb(t)
    assert out.shape == (3, 32)
    expected = emb[3](torch.nn.functional.silu(emb[1](gnn.SinusoidalEmbedding(8)(t))))
    assert torch.allclose(out, expected, atol=1e-6)
    assert gnn.TimeEmbedding(8)(t).shape == (3, 8)           # out_dim defaults to emb_dim
    with pytest.raises(ValueError, match="dim must be even"):
        gnn.TimeEmbedding(7)


def test_label_embedding_null_and_drop():
    emb = gnn.LabelEmbedding(10, 6)
    assert isinstance(emb, nn.Embedding) and emb.num_embeddings == 11 and emb.embedding_dim == 6
    null = emb.null(4, torch.device("cpu"))
    assert null.dtype == torch.long and null.tolist() == [10] * 4
    assert emb(null).shape == (4, 6) and torch.equal(emb(null)[0], emb.weight[10])
    assert emb.null(2).device.type == "cpu"
    y = torch.arange(10).repeat(100)
    assert torch.equal(emb.drop(y, 0.0), y)
    assert torch.equal(emb.drop(y, 1.0), emb.null(len(y)))
    torch.manual_seed(0)
    half = emb.drop(y, 0.5)
    dropped = half == 10
    assert 0.4 < dropped.float().mean() < 0.6
    assert torch.equal(half[~dropped], y[~dropped]), "the labels kept are unchanged"
    assert torch.equal(y, torch.arange(10).repeat(100)), "drop returns a new tensor"


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (10.0, TypeError), (None, TypeError)])
def test_label_embedding_bad_num_classes(bad, exc):
    with pytest.raises(exc, match="num_classes"):
        gnn.LabelEmbedding(bad, 4)


# ----------------------------------------------------------------------------- ConvBlock

def test_conv_block_shapes_and_residual():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    same = gnn.ConvBlock(4, 4)
    assert isinstance(same.skip, nn.Identity)
    assert same(x).shape == (2, 4, 6, 6)
    wider = gnn.ConvBlock(4, 12)  # 12 channels: groups = gcd(8, 12) = 4
    assert isinstance(wider.skip, nn.Conv2d) and wider.norm1.num_groups == 4
    assert wider(x).shape == (2, 12, 6, 6)
    # the residual path: with the second convolution zeroed, h = silu(norm(bias 0)) = 0, so out = skip(x)
    nn.init.zeros_(same.conv2.weight)
    nn.init.zeros_(same.conv2.bias)
    assert torch.allclose(same(x), x, atol=1e-6)


def test_conv_block_embedding():
    torch.manual_seed(0)
    block = gnn.ConvBlock(3, 8, emb_dim=5)
    x = torch.randn(2, 3, 4, 4)
    e = torch.randn(2, 5)
    out = block(x, e)
    assert out.shape == (2, 8, 4, 4)
    assert not torch.allclose(out, block(x, torch.randn(2, 5)))  # the embedding matters
    with pytest.raises(ValueError, match="emb"):
        block(x)


def test_conv_block_without_embedding_ignores_none():
    block = gnn.ConvBlock(3, 8)
    assert block.emb is None
    assert block(torch.randn(1, 3, 4, 4)).shape == (1, 8, 4, 4)


# ----------------------------------------------------------------------------- TinyUNet

@pytest.fixture
def unet():
    torch.manual_seed(0)
    return gnn.TinyUNet(channels=1, base=8, emb_dim=16)


@pytest.mark.parametrize("side", [8, 28])
def test_unet_shapes_and_zero_init(unet, side):
    x = torch.randn(3, 1, side, side)
    out = unet(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))  # the last conv starts at zero
    assert torch.equal(unet.out.weight, torch.zeros_like(unet.out.weight))


def test_unet_output_depends_on_input_and_time(unet):
    with torch.no_grad():
        unet.out.weight.normal_(0, 0.1)
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([3, 3])
    out = unet(x, t)
    assert not torch.allclose(out, unet(x, torch.tensor([500, 500])))
    assert not torch.allclose(out, unet(x + 1, t))
    # examples do not leak into each other (GroupNorm, no batch statistics)
    assert torch.allclose(unet(x[:1], t[:1]), out[:1], atol=1e-5)


def test_unet_gradients_flow(unet):
    x = torch.randn(2, 1, 8, 8)
    loss = (unet(x, torch.tensor([1, 2])) - x).square().mean()
    loss.backward()
    assert unet.out.weight.grad is not None and unet.out.weight.grad.abs().sum() > 0
    # after one step away from zero, the whole network receives gradient
    with torch.no_grad():
        unet.out.weight.normal_(0, 0.1)
    unet.zero_grad()
    (unet(x, torch.tensor([1, 2])) - x).square().mean().backward()
    for name, p in unet.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert unet.inp.weight.grad.abs().sum() > 0
    assert unet.time[1].weight.grad.abs().sum() > 0


def test_unet_multichannel():
    net = gnn.TinyUNet(channels=3, base=8, emb_dim=8)
    assert net(torch.randn(1, 3, 8, 8), torch.tensor([0])).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(1, 1, 8, 8), torch.tensor([0]))


def test_unet_class_conditional():
    torch.manual_seed(0)
    net = gnn.TinyUNet(base=8, emb_dim=16, num_classes=10)
    assert isinstance(net.label, gnn.LabelEmbedding) and isinstance(net.time, gnn.TimeEmbedding)
    assert net.label.num_embeddings == 11  # ten digits plus the "no label" index
    with torch.no_grad():
        net.out.weight.normal_(0, 0.1)
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([5, 5, 5])
    a = net(x, t, torch.tensor([0, 9, 10]))  # 10 = num_classes: no label
    assert a.shape == x.shape
    assert not torch.allclose(a, net(x, t, torch.tensor([1, 9, 10])))
    assert torch.allclose(a[2], net(x, t, net.label.null(3))[2]), "index 10 is the null label"
    # one message either way: labels go with num_classes and only with it (values are the caller's to check)
    with pytest.raises(ValueError, match=r"pass labels y \(B,\) exactly when the UNet was built with num_classes"):
        net(x, t)
    with pytest.raises(ValueError, match=r"pass labels y \(B,\) exactly when the UNet was built with num_classes"):
        gnn.TinyUNet(base=8, emb_dim=16)(x, t, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("shape", [(1, 1, 7, 8), (1, 1, 8, 9), (1, 1, 27, 27)])
def test_unet_odd_sides(unet, shape):
    with pytest.raises(ValueError, match="even H and W"):
        unet(torch.randn(*shape), torch.tensor([0]))


def test_unet_bad_inputs(unet):
    """Shapes are still checked (cheap, no device sync); values are not."""
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\) with even H and W, got \(1, 8, 8\)"):
        unet(torch.randn(1, 8, 8), torch.tensor([0]))
    with pytest.raises(ValueError, match="x must have shape"):
        unet(torch.randn(1, 1, 1, 8, 8), torch.tensor([0]))


def test_sinusoidal_frequencies_span_periods():
    emb = gnn.SinusoidalEmbedding(8, max_period=10_000.0)
    # the slowest frequency is 10000 ** (-3/4): period 2 pi * 1000
    out = emb(torch.tensor([2 * math.pi * 1000.0]))
    assert abs(out[0, 3].item()) < 1e-2 and abs(out[0, 7].item() - 1) < 1e-2
