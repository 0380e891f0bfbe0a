"""Figures for labs and the book: image grids and tables, 2-D scatter, density and vector fields,
loss curves, attention maps, animations.

Introduced in lab 00. Each function draws on an `ax` you pass (or a new
figure) and returns the figure, so the book and the labs share one look.
Animations come back as HTML from matplotlib's `to_jshtml`, which plays in a
notebook and in the static book alike (widgets do not).
"""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import torch
from matplotlib import animation

from . import validate


def _axes(ax, figsize=(4, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _grid(images: torch.Tensor, nrow: int, pad: int = 1, pad_value: float = 0.25) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (H', W', C) image with `pad` pixels of light grey between tiles."""
    n, c, h, w = images.shape
    ncol = math.ceil(n / nrow)
    canvas = torch.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), pad_value)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top:top + h, left:left + w] = images[i]
    return canvas.permute(1, 2, 0)


def image_grid(images: torch.Tensor, nrow: int | None = None, ax=None, title: str | None = None):
    """Tile a batch of images (N, C, H, W) with values in [0, 1] into `nrow` rows (lab 00).

    Values slightly outside [0, 1] (samples of a model) are clipped for display.
    """
    validate.tensor("images", images, ndim=4, dtype="float")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (N, C, H, W), got shape {tuple(images.shape)}")
    images = images.detach().float().cpu().clamp(0, 1)
    nrow = max(1, round(math.sqrt(len(images)))) if nrow is None else validate.positive_int("nrow", nrow)
    fig, ax = _axes(ax)
    grid = _grid(images, nrow)
    ax.imshow((grid.squeeze(-1) if grid.shape[-1] == 1 else grid).numpy(), cmap="gray_r", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def scatter2d(points: torch.Tensor, ax=None, title: str | None = None, lim: float = 4.0, **kwargs):
    """Scatter (N, 2) points on a square window [-lim, lim]^2 (lab 00)."""
    validate.tensor("points", points, ndim=2, dtype="float", shape=(None, 2))
    fig, ax = _axes(ax)
    p = points.detach().cpu()
    ax.scatter(p[:, 0], p[:, 1], s=kwargs.pop("s", 2), alpha=kwargs.pop("alpha", 0.5), **kwargs)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xticks=[], yticks=[])
    if title:
        ax.set_title(title)
    return fig


def density2d(log_prob, ax=None, title: str | None = None, lim: float = 4.0, resolution: int = 120):
    """Shade exp(log_prob) on a grid over [-lim, lim]^2; `log_prob` maps (M, 2) -> (M,) (lab 00)."""
    if not callable(log_prob):
        raise TypeError(f"log_prob must be a function from (M, 2) points to (M,) log-densities, got {type(log_prob).__name__}")
    axis = torch.linspace(-lim, lim, resolution)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    with torch.no_grad():
        lp = log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
    validate.tensor("log_prob(grid)", lp, shape=(resolution * resolution,))
    fig, ax = _axes(ax)
    ax.imshow(lp.exp().reshape(resolution, resolution).cpu().numpy(), origin="lower", cmap="viridis",
              extent=(-lim, lim, -lim, lim))
    ax.set(xticks=[], yticks=[], aspect="equal")
    if title:
        ax.set_title(title)
    return fig


def loss_curves(history: dict[str, list[float]], ax=None, title: str | None = None, smooth: int = 1,
                logy: bool = False):
    """Plot each named series of a training history against its step (lab 00).

    `history` maps a name to per-step values; `smooth` averages over a
    trailing window so that noisy minibatch losses read as a trend.
    """
    if not isinstance(history, dict) or not history:
        raise TypeError("history must be a non-empty dict mapping a name to a list of values")
    validate.positive_int("smooth", smooth)
    fig, ax = _axes(ax, figsize=(6, 3.5))
    for name, values in history.items():
        v = torch.as_tensor(values, dtype=torch.float64)
        if smooth > 1 and len(v) >= smooth:
            v = v.unfold(0, smooth, 1).mean(dim=1)
            ax.plot(range(smooth, smooth + len(v)), v, label=name)
        else:
            ax.plot(range(1, len(v) + 1), v, label=name)
    ax.set(xlabel="step", ylabel="value")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


PAGE_WIDTH = 7.0  # inches: a figure of the book's column, about 700 px at 100 dpi


def strip(frames: list[torch.Tensor], labels: list[str] | None = None, title: str | None = None,
          per_row: int = 6):
    """Panels, one per stage of a process (noising, sampling, interpolation), at page width.

    Each frame is either an image batch (N, C, H, W) or a point cloud (N, 2).
    More than `per_row` frames wrap into rows of equal length, so that every
    panel stays large enough to read at about 700 px.
    """
    if not frames:
        raise ValueError("frames must hold at least one image batch or point cloud")
    validate.positive_int("per_row", per_row)
    rows = math.ceil(len(frames) / per_row)
    cols = math.ceil(len(frames) / rows)
    panel = min(2.2, PAGE_WIDTH / cols)                                   # inches
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols, (panel + 0.3) * rows),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(frames):
            ax.set_axis_off()
            continue
        _draw(frames[i], ax)
        if labels:
            ax.set_title(labels[i], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw(frame: torch.Tensor, ax) -> None:
    if frame.dim() == 2:
        scatter2d(frame, ax=ax)
    else:
        image_grid(frame, ax=ax)


def image_table(images: torch.Tensor, col_labels: list[str] | None = None,
                row_labels: list[str] | None = None, panel: float | None = None):
    """A table of single images, (R, C, channels, H, W) in [0, 1], one per cell, at page width
    (chapters 1 and 2): a process followed across its columns, or completions beside the real
    image. `col_labels` title the columns; `row_labels` are written left of each row. `panel` is
    the cell's size in inches (by default as large as the page width allows, at most 1.2).
    """
    validate.tensor("images", images, ndim=5, dtype="float")
    rows, cols = images.shape[:2]
    for name, labels, n in (("col_labels", col_labels, cols), ("row_labels", row_labels, rows)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} needs one label for each of the {n} {name[:3]}s, got {len(labels)}")
    margin = 0.5 if row_labels else 0.0                                    # inches for row labels
    # the cells fill the figure, and a notebook's tight bounding box adds 0.1 inch on each side
    panel = min(1.2, (PAGE_WIDTH - 0.2 - margin) / cols) if panel is None else panel
    title = 0.25 if col_labels else 0.0
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(margin + panel * cols, title + panel * rows))
    fig.subplots_adjust(left=margin / (margin + panel * cols), right=1, bottom=0,
                        top=1 - title / (title + panel * rows), wspace=0.08, hspace=0.08)
    for r in range(rows):
        for c in range(cols):
            image_grid(images[r, c:c + 1], ax=axes[r, c])
    for c, label in enumerate(col_labels or []):
        axes[0, c].set_title(label, fontsize=9)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=9)
    return fig


# How a character is written on an axis: spaces and line breaks would be invisible.
_VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5"}


def attention_map(weights: torch.Tensor, tokens: str | list[str], ax=None, title: str | None = None):
    """One head's attention weights (L, L) as a heat map, the tokens (characters) on both axes
    (chapter 1): row i is the distribution of query position i over the key positions j. Spaces
    are shown as an open box, line breaks as a return arrow."""
    validate.tensor("weights", weights, ndim=2, dtype="float", low=0.0, high=1.0 + 1e-6)
    tokens = list(tokens)
    if weights.shape != (len(tokens), len(tokens)):
        raise ValueError(f"weights must have shape (L, L) for the L = {len(tokens)} tokens, got "
                         f"{tuple(weights.shape)}")
    fig, ax = _axes(ax)
    ax.imshow(weights.detach().float().cpu().numpy(), cmap="Blues", vmin=0, vmax=1)
    shown = [_VISIBLE.get(c, c) for c in tokens]
    ax.set_xticks(range(len(tokens)), shown)
    ax.set_yticks(range(len(tokens)), shown)
    ax.tick_params(length=0, labelsize=8)
    ax.set(xlabel="key: attended to", ylabel="query: attending")
    if title:
        ax.set_title(title)
    return fig


def vector_field(field, points: torch.Tensor | None = None, ax=None, title: str | None = None,
                 lim: float = 3.5, resolution: int = 15, cap: float = 0.8,
                 labels: tuple[str, str] = ("points", "vector field")):
    """Arrows of a 2-D vector field on a resolution x resolution grid over [-lim, lim]^2, over an
    optional point cloud (chapter 2: the direction -eps_theta(x, t) in which a diffusion model
    moves x). `field` maps (M, 2) points to (M, 2) vectors. An arrow's length grows with the
    vector's size up to the `cap` quantile of the sizes on the grid, and stays at full length
    beyond it, so that a few long vectors far from the data do not shrink all the others.
    `labels` name the points and the arrows for a legend (`ax.legend()`).
    """
    if not callable(field):
        raise TypeError(f"field must be a function from (M, 2) points to (M, 2) vectors, got "
                        f"{type(field).__name__}")
    validate.positive_int("resolution", resolution)
    if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not lim > 0:
        raise ValueError(f"lim must be a number > 0, the half-width of the window, got {lim!r}")
    if not 0 < cap <= 1:
        raise ValueError(f"cap must lie in (0, 1], a quantile of the arrows' sizes, got {cap}")
    axis = torch.linspace(-lim, lim, resolution)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)                     # (M, 2)
    with torch.no_grad():
        vectors = field(grid)
    validate.tensor("field(grid)", vectors, shape=(len(grid), 2), dtype="float")
    vectors = vectors.detach().float().cpu()
    size = vectors.norm(dim=1, keepdim=True)
    longest = size.quantile(cap).clamp_min(1e-12)
    step = 2 * lim / max(1, resolution - 1)                                # grid spacing
    arrows = vectors / size.clamp_min(1e-12) * (size.clamp(max=longest) / longest) * 0.9 * step
    fig, ax = _axes(ax)
    if points is not None:
        validate.tensor("points", points, ndim=2, dtype="float", shape=(None, 2))
        p = points.detach().cpu()
        ax.scatter(p[:, 0], p[:, 1], s=4, alpha=0.45, color="C1", zorder=1, linewidths=0,
                   label=labels[0])
    ax.quiver(grid[:, 0], grid[:, 1], arrows[:, 0], arrows[:, 1], color="C0", angles="xy",
              scale_units="xy", scale=1, width=0.008, headwidth=3.5, headlength=4,
              headaxislength=3.5, zorder=2, label=labels[1])
    pad = step
    ax.set(xlim=(-lim - pad, lim + pad), ylim=(-lim - pad, lim + pad), aspect="equal")
    if title:
        ax.set_title(title)
    return fig



def animate(frames: list[torch.Tensor], labels: list[str] | None = None, interval: int = 150):
    """An animation of image batches or point clouds as HTML that plays in notebooks and the book.

    Returns an IPython HTML object made by `player`: it needs no network.
    """
    from IPython.display import HTML

    if not frames:
        raise ValueError("frames must hold at least one image batch or point cloud")
    fig, ax = plt.subplots(figsize=(3.5, 3.5))

    def show(i):
        ax.clear()
        _draw(frames[i], ax)
        if labels:
            ax.set_title(labels[i])

    anim = animation.FuncAnimation(fig, show, frames=len(frames), interval=interval)
    html = player(anim)
    plt.close(fig)
    return HTML(html)


def player(anim: animation.Animation, default_mode: str = "once") -> str:
    """matplotlib's `to_jshtml` player for `anim`, with controls that work offline (lab 00).

    Every animation of the course goes through here (chapters 1 to 3 and their labs).
    """
    return _offline_controls(anim.to_jshtml(default_mode=default_mode))


# matplotlib's player loads Font Awesome 4 from a CDN for its button icons; offline
# the buttons would be blank. These are the same icons as inline SVG (16x16 boxes).
_ICONS = {
    "play": "M4 2v12l10-6z",
    "pause": "M3 2h4v12H3zM9 2h4v12H9z",
    "step-forward": "M3 2v12l8-6zM11 2h2v12h-2z",
    "step-backward": "M13 2v12L5 8zM3 2h2v12H3z",
    "fast-forward": "M1 2v12l6-6zM7 2v12l6-6zM13 2h2v12h-2z",
    "fast-backward": "M15 2v12L9 8zM9 2v12L3 8zM1 2h2v12H1z",
    "minus": "M2 7h12v2H2z",
    "plus": "M2 7h12v2H2zM7 2h2v12H7z",
}
_FONT_AWESOME = re.compile(r'<link rel="stylesheet"\s+href="[^"]*font-awesome[^"]*">')
_ICON = re.compile(r'<i class="fa fa-([a-z-]+)( fa-flip-horizontal)?"></i>')


def _svg_icon(match: re.Match) -> str:
    if match.group(1) not in _ICONS:
        raise ValueError(f"matplotlib's animation player uses an icon without an SVG here: "
                         f"{match.group(1)!r}; add it to gencourse.plot._ICONS")
    flip = ' transform="matrix(-1 0 0 1 16 0)"' if match.group(2) else ""  # mirrored in its box
    return (f'<svg width="1em" height="1em" viewBox="0 0 16 16" fill="currentColor" '
            f'aria-hidden="true"><path{flip} d="{_ICONS[match.group(1)]}"/></svg>')


def _offline_controls(html: str) -> str:
    """`to_jshtml` output without its CDN stylesheet, its icons drawn as inline SVG."""
    return _ICON.sub(_svg_icon, _FONT_AWESOME.sub("", html))


def pareto(card, device: str = "cpu", ax=None, title: str | None = None):
    """Quality against latency for the rows of an `evaluate.Scorecard` (chapter 6, lab 06): the Frechet
    distance as a multiple of the real-data floor (lower is better) against the milliseconds to draw a
    batch on `device`, both on log scales, with the Pareto front -- the rows no other row beats on both
    -- joined by a line. A row off the front is slower and worse than some row on it."""
    rows = [r for r in getattr(card, "rows", []) if device in r.ms]
    if not rows:
        raise ValueError(f"the scorecard has no rows timed on {device!r}: "
                         "pass evaluate.scorecard(...)'s result")
    fig, ax = _axes(ax, figsize=(6, 4))
    front = card.pareto(device)
    for r in rows:
        on = r.name in front
        ax.scatter(r.ms[device], r.frechet.ratio, s=60, color="C0" if on else "C7", zorder=3)
        ax.annotate(r.name, (r.ms[device], r.frechet.ratio), textcoords="offset points", xytext=(6, 5),
                    fontsize=9)
    points = sorted((card[n].ms[device], card[n].frechet.ratio) for n in front)
    ax.step([p[0] for p in points], [p[1] for p in points], where="post", color="C0", alpha=0.6,
            label="Pareto front")
    ax.set(xscale="log", yscale="log", xlabel=f"ms to draw a batch of samples ({device})",
           ylabel="Frechet distance / real-data floor")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return fig
