"""Stored outputs that read without a kernel or a network: widget views become text.

A progress bar that tqdm draws in a notebook is an ipywidget. Stored as a
widget view, it shows in the static book only after the page fetches
require.js and the widget manager from a CDN, which a book read offline cannot
do; without them it shows tqdm's text from the moment the bar was created
(0%). `widgets_as_text` replaces each widget view by the text of its final
state, read from the notebook's stored widget state, and drops that state:

    100%|##########| 1500/1500 [00:10<00:00, 143.53it/s, loss=0.4721]

(with tqdm's block characters). Any other widget (a slider, an explorer) cannot
work without a kernel: it becomes a line that says so. `gencourse execute`
applies this to every solution it stores.
"""

import html

import nbformat

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"
BAR = 10  # characters, as tqdm draws a bar of unknown width
LIVE_ONLY = "(an interactive widget: it works when you run the notebook)"


def _text(models: dict, model_id: str) -> str | None:
    """The text a stored widget shows: HTML as text, a progress bar as blocks, a box joined."""
    model = models.get(model_id)
    if model is None:
        return None
    name, state = model["model_name"], model["state"]
    if name == "HTMLModel":
        return html.unescape(state.get("value", "")).replace("\u2007", " ")
    if name in ("FloatProgressModel", "IntProgressModel"):
        span = (state.get("max", 100) - state.get("min", 0)) or 1
        filled = round(BAR * (state.get("value", 0) - state.get("min", 0)) / span)
        return "|" + "\u2588" * filled + " " * (BAR - filled) + "|"
    if name in ("HBoxModel", "VBoxModel"):
        parts = [_text(models, child.removeprefix("IPY_MODEL_")) for child in state["children"]]
        return None if None in parts else "".join(parts)
    return None


def widgets_as_text(nb: nbformat.NotebookNode) -> int:
    """Replace the widget views of `nb` by their final text, in place; return how many."""
    models = nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(VIEW)
            if view is None:
                continue
            text = _text(models, view["model_id"])
            del output["data"][VIEW]
            output["data"]["text/plain"] = LIVE_ONLY if text is None else text
            replaced += 1
    nb.metadata.pop("widgets", None)
    return replaced
