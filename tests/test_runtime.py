"""Unit tests of gencourse.runtime: device, seeds, profiles, Colab detection, cache folder."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import pytest
import torch

from gencourse import runtime


# ----------------------------------------------------------------------------- device

def test_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_device_here_is_cpu():
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("Apple MPS present")
    d = runtime.device()
    assert isinstance(d, torch.device) and d.type == "cpu"


def test_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.device() == torch.device("cuda")


# ----------------------------------------------------------------------------- seeds

def _draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_seed_everything_repeats_python_numpy_torch():
    runtime.seed_everything(123)
    first = _draws()
    runtime.seed_everything(123)
    assert _draws() == first
    runtime.seed_everything(124)
    assert _draws() != first


def test_seed_everything_returns_generator_with_that_seed():
    g = runtime.seed_everything(77)
    assert isinstance(g, torch.Generator)
    assert g.initial_seed() == 77
    expected = torch.rand(5, generator=torch.Generator().manual_seed(77))
    assert torch.equal(torch.rand(5, generator=g), expected)


def test_seed_everything_generator_is_independent_of_global_stream():
    g = runtime.seed_everything(5)
    torch.rand(100)  # draws from the global generator must not move g
    expected = torch.rand(4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.rand(4, generator=g), expected)


def test_seed_everything_accepts_bounds():
    assert runtime.seed_everything(0).initial_seed() == 0
    assert runtime.seed_everything(2**32 - 1).initial_seed() == 2**32 - 1


@pytest.mark.parametrize("bad", ["1", 1.0, True, None, [1]])
def test_seed_everything_bad_type(bad):
    with pytest.raises(TypeError, match="seed"):
        runtime.seed_everything(bad)


@pytest.mark.parametrize("bad", [-1, 2**32, 2**40])
def test_seed_everything_bad_value(bad):
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(bad)


# ----------------------------------------------------------------------------- profile

def test_profile_fast_without_cuda(monkeypatch):
    monkeypatch.delenv("GENCOURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.profile() == "fast"


def test_profile_full_with_cuda(monkeypatch):
    monkeypatch.delenv("GENCOURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.profile() == "full"


@pytest.mark.parametrize("value, expected", [("full", "full"), ("fast", "fast"), (" FULL ", "full"), ("Fast", "fast")])
def test_profile_env_override(monkeypatch, value, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: expected == "fast")  # the opposite of the env
    monkeypatch.setenv("GENCOURSE_PROFILE", value)
    assert runtime.profile() == expected


def test_profile_empty_env_means_hardware(monkeypatch):
    monkeypatch.setenv("GENCOURSE_PROFILE", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.profile() == "fast"


def test_profile_invalid_env(monkeypatch):
    monkeypatch.setenv("GENCOURSE_PROFILE", "medium")
    with pytest.raises(ValueError, match="GENCOURSE_PROFILE") as err:
        runtime.profile()
    assert "medium" in str(err.value)


# ----------------------------------------------------------------------------- Colab

def test_in_colab_false_here(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert runtime.in_colab() is False


def test_in_colab_true_with_env(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20240101-060000_RC00")
    assert runtime.in_colab() is True


def test_in_colab_true_with_module(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert runtime.in_colab() is True


# ----------------------------------------------------------------------------- cache

def test_cache_dir_honours_env_and_creates_it(monkeypatch, tmp_path):
    target = tmp_path / "deep" / "cache"
    assert not target.exists()
    monkeypatch.setenv("GENCOURSE_CACHE", str(target))
    assert runtime.cache_dir() == str(target)
    assert target.is_dir()
    assert runtime.cache_dir() == str(target)  # a second call on an existing folder is fine


def test_cache_dir_default_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("GENCOURSE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    path = runtime.cache_dir()
    assert path == os.path.join(str(tmp_path), ".cache", "gencourse")
    assert os.path.isdir(path)


def test_cache_dir_empty_env_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("GENCOURSE_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    assert runtime.cache_dir() == os.path.join(str(tmp_path), ".cache", "gencourse")
