"""Explorers for live notebooks (ipywidgets), with a static twin for the book.

Introduced in lab 01. Widgets need a running kernel, so the book shows the
same picture as a matplotlib animation (`temperature_animation`), which plays
in static HTML. Both draw with `temperature_bars`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from . import autoregressive as ar
from . import plot, validate


def _probs(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    return ar.next_token_probs(logits[None], temperature, top_k or None)[0]


def _labels(labels, n: int) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    labels = ["\u2423" if c == " " else repr(c)[1:-1] if len(c) == 1 else c for c in labels]  # a visible space
    if len(labels) != n:
        raise ValueError(f"labels must name each of the {n} tokens, got {len(labels)}")
    return labels


def temperature_bars(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, labels=None,
                     ax=None, show: int = 20):
    """Bar chart of softmax(logits / temperature) for the `show` most likely tokens (lab 01).

    logits: (V,) scores of the next token; labels: V names (characters).
    Bars of tokens that top_k removes are drawn hollow.
    """
    validate.tensor("logits", logits, ndim=1, dtype="float")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    names = _labels(labels, len(logits))
    order = logits.argsort(descending=True)[:show]
    probs = _probs(logits.detach().cpu().float(), temperature, top_k)[order].tolist()
    base = logits.detach().cpu().float().softmax(-1)[order].tolist()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.6))
    ax.bar(range(len(order)), base, color="none", edgecolor="0.6", label="temperature 1")
    ax.bar(range(len(order)), probs, color="C0", alpha=0.8, label=f"temperature {temperature:g}"
           + (f", top-{top_k}" if top_k else ""))
    ax.set_xticks(range(len(order)), [names[i] for i in order.tolist()])
    ax.set(ylim=(0, 1), ylabel="probability")
    ax.legend(loc="upper right", fontsize=8)
    return ax.figure


def temperature_animation(logits: torch.Tensor, labels=None, temperatures=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
                          title: str | None = None, interval: int = 700):
    """The same bars as an animation over temperatures, as HTML that plays in the static book (chapter 1)."""
    from IPython.display import HTML
    from matplotlib import animation

    fig, ax = plt.subplots(figsize=(7, 2.8))

    def draw(i):
        ax.clear()
        temperature_bars(logits, temperatures[i], labels=labels, ax=ax)
        if title:
            ax.set_title(title, fontsize=10)

    anim = animation.FuncAnimation(fig, draw, frames=len(temperatures), interval=interval)
    html = plot.player(anim, default_mode="loop")
    plt.close(fig)
    return HTML(html)


def temperature_explorer(model, tokenizer, prompt: str, max_new_tokens: int = 120, seed: int = 0):
    """Sliders for temperature and top-k: the next-character distribution after `prompt`, and a
    continuation sampled with those settings (lab 01). Needs a live kernel with ipywidgets.

    model: a gencourse.autoregressive.GPT; tokenizer: the CharTokenizer it was trained with.
    """
    import ipywidgets as w
    from IPython.display import display

    tokens = tokenizer.encode(prompt)
    if len(tokens) == 0:
        raise ValueError("prompt must hold at least one character")
    device = next(model.parameters()).device
    context = tokens[-model.config.block_size:][None].to(device)
    with torch.no_grad():
        logits = model.eval()(context)[0, -1].cpu()
    temperature = w.FloatLogSlider(value=1.0, base=10, min=-1, max=0.6, step=0.05, description="temperature")
    top_k = w.IntSlider(value=0, min=0, max=tokenizer.vocab_size, description="top-k (0: all)")
    out = w.Output()

    def update(*_):
        k = top_k.value or None
        with out:
            out.clear_output(wait=True)
            fig = temperature_bars(logits, temperature.value, k, tokenizer.chars)
            fig.axes[0].set_title(f"next character after {prompt[-30:]!r}", fontsize=10)
            plt.show()
            g = torch.Generator().manual_seed(seed)
            text = model.sample(1, prompt=context[0], max_new_tokens=max_new_tokens, temperature=temperature.value,
                                top_k=k, generator=g)
            print(prompt + tokenizer.decode(text[0, context.shape[1]:].cpu()))

    temperature.observe(update, names="value")
    top_k.observe(update, names="value")
    update()
    box = w.VBox([w.HBox([temperature, top_k]), out])
    display(box)
    return box
