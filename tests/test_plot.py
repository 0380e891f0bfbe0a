"""Unit tests of gencourse.plot: every function returns a figure drawn from the right data."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gencourse import plot  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _shown(fig) -> np.ndarray:
    """The pixel array of the (only) image on the figure's first axes."""
    images = fig.axes[0].get_images()
    assert len(images) == 1
    return np.asarray(images[0].get_array())


# ----------------------------------------------------------------------------- image_grid

def test_image_grid_tiling():
    n, h, w = 6, 3, 4
    images = torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(0))
    fig = plot.image_grid(images)
    assert isinstance(fig, Figure)
    grid = _shown(fig)
    nrow, ncol = 2, 3  # round(sqrt(6)) = 2 rows
    assert grid.shape == (nrow * (h + 1) + 1, ncol * (w + 1) + 1)
    mask = np.ones(grid.shape, bool)  # pixels that belong to no tile
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = 1 + r * (h + 1), 1 + c * (w + 1)
        np.testing.assert_allclose(grid[top:top + h, left:left + w], images[i, 0].numpy())
        mask[top:top + h, left:left + w] = False
    pad = grid[mask]
    assert np.all(pad == pad[0]) and 0 <= pad[0] <= 1  # one uniform separator colour
    assert not fig.axes[0].axison


def test_image_grid_nrow_and_partial_last_row():
    images = torch.stack([torch.full((1, 2, 2), i / 10) for i in range(5)])
    grid = _shown(plot.image_grid(images, nrow=1))
    assert grid.shape == (2 + 2, 5 * 3 + 1)
    np.testing.assert_allclose(grid[1:3, 1 + 4 * 3:3 + 4 * 3], 0.4)
    grid = _shown(plot.image_grid(images, nrow=3))  # 3 rows of 2 columns, the last tile empty
    assert grid.shape == (3 * 3 + 1, 2 * 3 + 1)
    np.testing.assert_allclose(grid[7:9, 1:3], 0.4)  # image 4: row 2, column 0
    np.testing.assert_allclose(grid[1:3, 4:6], 0.1)  # image 1: row 0, column 1


def test_image_grid_clips_and_colours():
    images = torch.tensor([[[[-1.0, 2.0]]]])  # one 1x2 image outside [0, 1]
    grid = _shown(plot.image_grid(images))
    np.testing.assert_allclose(grid[1, 1:3], [0.0, 1.0])
    rgb = torch.rand(4, 3, 2, 2)
    grid = _shown(plot.image_grid(rgb))
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3)
    np.testing.assert_allclose(grid[1:3, 4:6], rgb[1].permute(1, 2, 0).numpy())


def test_image_grid_draws_on_given_axes_with_title():
    fig, (a, b) = plt.subplots(1, 2)
    assert plot.image_grid(torch.zeros(4, 1, 2, 2), ax=b, title="samples") is fig
    assert b.get_title() == "samples" and len(b.get_images()) == 1 and len(a.get_images()) == 0


def test_image_grid_accepts_grad_tensors():
    x = torch.rand(4, 1, 2, 2, requires_grad=True)
    assert isinstance(plot.image_grid(x * 1), Figure)


@pytest.mark.parametrize("bad, exc", [
    (torch.zeros(4, 8, 8), ValueError),          # no channel axis
    (torch.zeros(4, 2, 8, 8), ValueError),       # 2 channels
    (torch.zeros(4, 1, 8, 8, dtype=torch.long), TypeError),
    (np.zeros((4, 1, 8, 8)), TypeError),
])
def test_image_grid_bad_images(bad, exc):
    with pytest.raises(exc, match="images"):
        plot.image_grid(bad)


# ----------------------------------------------------------------------------- scatter2d

def test_scatter2d():
    pts = torch.tensor([[0.0, 1.0], [-2.0, 3.0], [1.5, -0.5]])
    fig = plot.scatter2d(pts, title="data", lim=3.0)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), pts.numpy())
    assert ax.get_xlim() == (-3.0, 3.0) and ax.get_ylim() == (-3.0, 3.0)
    assert ax.get_title() == "data"


def test_scatter2d_kwargs():
    fig = plot.scatter2d(torch.zeros(5, 2), s=10, alpha=1.0, color="red")
    coll = fig.axes[0].collections[0]
    assert coll.get_sizes()[0] == 10 and coll.get_alpha() == 1.0


@pytest.mark.parametrize("bad, exc", [
    (torch.zeros(5, 3), ValueError),
    (torch.zeros(5), ValueError),
    (torch.zeros(5, 2, dtype=torch.long), TypeError),
    ([[0.0, 1.0]], TypeError),
])
def test_scatter2d_bad_points(bad, exc):
    with pytest.raises(exc, match="points"):
        plot.scatter2d(bad)


# ----------------------------------------------------------------------------- density2d

def test_density2d_orientation_and_values():
    res = 20
    fig = plot.density2d(lambda p: p[:, 0], resolution=res, lim=2.0)  # density exp(x): grows to the right
    assert isinstance(fig, Figure)
    img = _shown(fig)
    assert img.shape == (res, res)
    axis = np.linspace(-2, 2, res)
    np.testing.assert_allclose(img, np.exp(np.tile(axis, (res, 1))), rtol=1e-5)
    im = fig.axes[0].get_images()[0]
    assert im.origin == "lower" and tuple(im.get_extent()) == (-2.0, 2.0, -2.0, 2.0)


def test_density2d_y_axis():
    img = _shown(plot.density2d(lambda p: -p[:, 1].square(), resolution=21, title="g"))
    # rows are y (from the bottom), so the maximum sits on the middle row
    assert np.all(img.argmax(axis=0) == 10)


def test_density2d_bad_input():
    with pytest.raises(TypeError, match="log_prob must be a function"):
        plot.density2d(torch.zeros(10))
    with pytest.raises(ValueError, match=r"log_prob\(grid\) must have shape"):
        plot.density2d(lambda p: p, resolution=10)


# ----------------------------------------------------------------------------- loss_curves

def test_loss_curves_smoothing():
    values = [float(v) for v in range(10)]
    fig = plot.loss_curves({"loss": values, "kl": [1.0, 2.0]}, smooth=3, logy=True, title="t")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    loss, kl = ax.get_lines()
    assert loss.get_label() == "loss" and kl.get_label() == "kl"
    np.testing.assert_allclose(loss.get_xdata(), range(3, 11))  # a trailing window of 3 ends at step 3
    np.testing.assert_allclose(loss.get_ydata(), [1, 2, 3, 4, 5, 6, 7, 8])
    np.testing.assert_allclose(kl.get_xdata(), [1, 2])  # shorter than the window: unsmoothed
    np.testing.assert_allclose(kl.get_ydata(), [1, 2])
    assert ax.get_yscale() == "log" and ax.get_title() == "t"


def test_loss_curves_unsmoothed_on_given_axes():
    fig, ax = plt.subplots()
    assert plot.loss_curves({"a": [3.0, 1.0, 2.0]}, ax=ax) is fig
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [3, 1, 2])
    assert ax.get_yscale() == "linear"


def test_loss_curves_bad_input():
    with pytest.raises(TypeError, match="history"):
        plot.loss_curves({})
    with pytest.raises(TypeError, match="history"):
        plot.loss_curves([1.0, 2.0])
    with pytest.raises(ValueError, match="smooth"):
        plot.loss_curves({"a": [1.0]}, smooth=0)


# ----------------------------------------------------------------------------- strip

def test_strip_panels():
    frames = [torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8), torch.randn(50, 2)]
    fig = plot.strip(frames, labels=["t=0", "t=1", "points"], title="process")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["t=0", "t=1", "points"]
    assert len(fig.axes[0].get_images()) == 1 and len(fig.axes[2].collections) == 1
    assert fig._suptitle.get_text() == "process"


def test_strip_fits_the_page_and_wraps_long_processes():
    """Nine frames at 2.2 inches each would be 2000 px wide: they wrap into two rows of five."""
    frames = [torch.rand(8, 1, 8, 8) for _ in range(9)]
    fig = plot.strip(frames, labels=[str(i) for i in range(9)])
    width, height = fig.get_size_inches()
    assert width <= plot.PAGE_WIDTH + 1e-9 and height > width / 5
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert len(shown) == 9 and len(fig.axes) == 10        # one empty panel closes the second row
    assert [ax.get_title() for ax in shown] == [str(i) for i in range(9)]
    assert plot.strip(frames[:3]).get_size_inches()[0] == pytest.approx(6.6)  # few frames keep size
    with pytest.raises(ValueError, match="per_row"):
        plot.strip(frames, per_row=0)


def test_strip_single_frame_and_bad():
    assert len(plot.strip([torch.rand(2, 1, 4, 4)]).axes) == 1
    with pytest.raises(ValueError, match="frames"):
        plot.strip([])
    with pytest.raises(ValueError, match="images"):
        plot.strip([torch.rand(2, 2, 4, 4)])



# ----------------------------------------------------------------------------- image_table

def test_image_table_cells_and_labels():
    images = torch.rand(2, 3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    fig = plot.image_table(images, col_labels=["a", "b", "c"], row_labels=["x", "y"])
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    for i, ax in enumerate(fig.axes):                         # row by row, one image per cell
        r, c = divmod(i, 3)
        np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array())[1:5, 1:5],
                                   images[r, c, 0].numpy())
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    assert [t.get_text() for t in fig.axes[0].texts] == ["x"]
    assert [t.get_text() for t in fig.axes[3].texts] == ["y"]


def test_image_table_fits_the_page():
    width, _ = plot.image_table(torch.rand(1, 12, 1, 8, 8), row_labels=["r"]).get_size_inches()
    assert width == pytest.approx(plot.PAGE_WIDTH - 0.2)     # with the 0.1 inch pads of a notebook
    width, height = plot.image_table(torch.rand(2, 2, 1, 8, 8)).get_size_inches()
    assert width == pytest.approx(2.4) and height == pytest.approx(2.4)   # cells at most 1.2 in


def test_image_table_bad_input():
    with pytest.raises(ValueError, match="images must have 5 dimensions"):
        plot.image_table(torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match="col_labels needs one label for each of the 3 cols"):
        plot.image_table(torch.rand(1, 3, 1, 8, 8), col_labels=["a"])
    with pytest.raises(ValueError, match="row_labels"):
        plot.image_table(torch.rand(2, 3, 1, 8, 8), row_labels=["a"])


# ----------------------------------------------------------------------------- attention_map

def test_attention_map_shows_weights_and_characters():
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    fig = plot.attention_map(weights, "a b", title="head")
    ax = fig.axes[0]
    np.testing.assert_allclose(_shown(fig), weights.numpy())
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["a", "\u2423", "b"] == [t.get_text() for t in ax.get_yticklabels()]
    assert ax.get_xlabel().startswith("key") and ax.get_ylabel().startswith("query")
    assert ax.get_title() == "head"
    assert [t.get_text() for t in plot.attention_map(torch.eye(2), ["x", "\n"]).axes[0]
            .get_xticklabels()] == ["x", "\u21b5"]


def test_attention_map_bad_input():
    with pytest.raises(ValueError, match=r"shape \(L, L\) for the L = 2 tokens"):
        plot.attention_map(torch.eye(3), "ab")
    with pytest.raises(ValueError, match="weights must lie in"):
        plot.attention_map(2 * torch.eye(2), "ab")
    with pytest.raises(ValueError, match="weights must have 2 dimensions"):
        plot.attention_map(torch.eye(2)[None], "ab")


# ----------------------------------------------------------------------------- vector_field

def _arrows(fig):
    quiver = fig.axes[0].collections[-1]
    return np.asarray(quiver.X), np.asarray(quiver.Y), np.asarray(quiver.U), np.asarray(quiver.V)


def test_vector_field_directions_and_capped_lengths():
    """A field that points to the origin with a size equal to the distance: arrows point
    inwards, grow with the distance up to the cap, and none is longer than the grid spacing."""
    fig = plot.vector_field(lambda p: -p, lim=2.0, resolution=5, cap=0.5, title="pull")
    x, y, u, v = _arrows(fig)
    assert len(x) == 25 and fig.axes[0].get_title() == "pull"
    size = np.hypot(x, y)
    length = np.hypot(u, v)
    away = size > 0
    np.testing.assert_allclose((u * x + v * y)[away] / (length * size)[away], -1, atol=1e-6)
    spacing = 1.0
    median = np.quantile(size, 0.5)
    np.testing.assert_allclose(length, 0.9 * spacing * np.minimum(size, median) / median, atol=1e-6)


def test_vector_field_over_points_with_legend_labels():
    pts = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    fig = plot.vector_field(lambda p: torch.ones_like(p), points=pts, labels=("samples", "-eps"))
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), pts.numpy())
    assert [c.get_label() for c in ax.collections] == ["samples", "-eps"]
    x, y, u, v = _arrows(fig)
    np.testing.assert_allclose(u, v)                          # a constant field: equal arrows
    assert ax.get_aspect() == 1.0


def test_vector_field_bad_input():
    with pytest.raises(TypeError, match="field must be a function"):
        plot.vector_field(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"field\(grid\) must have shape"):
        plot.vector_field(lambda p: p[:, :1])
    with pytest.raises(ValueError, match="cap"):
        plot.vector_field(lambda p: p, cap=0)
    with pytest.raises(ValueError, match="lim"):
        plot.vector_field(lambda p: p, lim=-1)
    with pytest.raises(ValueError, match="points"):
        plot.vector_field(lambda p: p, points=torch.zeros(3, 3))


# ----------------------------------------------------------------------------- animate

def test_animate_frames():
    from IPython.display import HTML

    frames = [torch.rand(4, 1, 8, 8) for _ in range(4)]
    html = plot.animate(frames, labels=[f"step {i}" for i in range(4)], interval=100)
    assert isinstance(html, HTML)
    assert "<script" in html.data
    assert len(re.findall(r'frames\[\d+\] = "data:image', html.data)) == 4
    assert plt.get_fignums() == []  # the figure behind the animation is closed


def test_animate_plays_offline():
    """matplotlib's player takes its icons from a CDN; ours draws them as inline SVG."""
    html = plot.animate([torch.rand(2, 1, 8, 8) for _ in range(2)]).data
    assert not re.search(r"(href|src)=[\"']https?:", html) and "font-awesome" not in html
    assert 'class="fa' not in html, "every Font Awesome icon should be replaced"
    buttons = re.findall(r"<button[^>]*>\s*(.*?)</button>", html, re.DOTALL)
    assert len(buttons) == 9 and all(b.startswith("<svg") for b in buttons)
    assert html.count("matrix(-1 0 0 1 16 0)") == 1     # "play backwards" is the mirrored play


def test_animate_points():
    html = plot.animate([torch.randn(30, 2), torch.randn(30, 2)])
    assert len(re.findall(r'frames\[\d+\] = "data:image', html.data)) == 2


def test_animate_empty():
    with pytest.raises(ValueError, match="frames"):
        plot.animate([])


def test_every_animation_goes_through_the_offline_player():
    """A direct `to_jshtml` brings back the CDN icons: the book, the labs and the package use
    plot.player (or plot.animate) instead."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = [*(root / "gencourse").rglob("*.py"), *(root / "book").glob("*.md"),
               *(root / "solutions").glob("*.ipynb")]
    direct = [p.relative_to(root).as_posix() for p in sources
              if "to_jshtml(" in p.read_text(encoding="utf-8") and p.name != "plot.py"]
    assert not direct, f"these call to_jshtml directly; use gencourse.plot.player: {direct}"
