"""Stored outputs read without a kernel or a network: widget progress bars become text."""

import configparser
import json
import re
from pathlib import Path

import nbformat
import pytest

from gencourse.course import outputs

ROOT = Path(__file__).resolve().parents[1]


def notebook_with_a_progress_bar(value=1500.0):
    """A notebook as nbclient stores it after a tqdm bar in a cell: a view and its widget state."""
    models = {
        "box": ("HBoxModel", {"children": ["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]}),
        "left": ("HTMLModel", {"value": "100%"}),
        "bar": ("FloatProgressModel", {"min": 0.0, "max": 1500.0, "value": value}),
        "right": ("HTMLModel",
                  {"value": "\u20071500/1500\u2007[00:10&lt;00:00,\u2007143.53it/s]"}),
        "slider": ("IntSliderModel", {"value": 3}),
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {outputs.STATE: {"version_major": 2, "version_minor": 0, "state": {
        key: {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}
        for key, (name, state) in models.items()}}}
    cell = nbformat.v4.new_code_cell("fit(model)")
    for model_id, fallback in (("box", "  0%|          | 0/1500 [00:00<?, ?it/s]"),
                               ("slider", "IntSlider(value=3)")):
        cell.outputs.append(nbformat.v4.new_output("display_data", data={
            outputs.VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0},
            "text/plain": fallback}))
    nb.cells.append(cell)
    return nb


def test_a_progress_bar_is_stored_as_its_final_text():
    nb = notebook_with_a_progress_bar()
    assert outputs.widgets_as_text(nb) == 2
    bar, slider = (o["data"] for o in nb.cells[0].outputs)
    assert bar == {"text/plain": "100%|" + "\u2588" * 10 + "| 1500/1500 [00:10<00:00, 143.53it/s]"}
    assert slider == {"text/plain": outputs.LIVE_ONLY}, "a widget that needs a kernel says so"
    assert "widgets" not in nb.metadata, "the widget state would make the book load a CDN"
    nbformat.validate(nb)


def test_a_bar_stopped_halfway_shows_half_its_blocks():
    nb = notebook_with_a_progress_bar(value=750.0)
    outputs.widgets_as_text(nb)
    assert "|" + "\u2588" * 5 + " " * 5 + "|" in nb.cells[0].outputs[0]["data"]["text/plain"]


def sanitize(text):
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "tests" / "sanitize.cfg")
    for section in cfg.sections():
        text = re.sub(cfg[section]["regex"], cfg[section]["replace"], text)
    return text


def test_nbval_reads_a_fresh_bar_and_a_stored_bar_alike():
    """A fresh run prints the bar as created, the stored solution holds its final text."""
    nb = notebook_with_a_progress_bar()
    fresh = nb.cells[0].outputs[0]["data"]["text/plain"]
    outputs.widgets_as_text(nb)
    stored = nb.cells[0].outputs[0]["data"]["text/plain"]
    assert sanitize(fresh) == sanitize(stored) == "PROGRESS"


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*.ipynb")),
                         ids=lambda p: p.name)
def test_solutions_store_no_widget_views(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    views = [i for i, cell in enumerate(nb["cells"]) for o in cell.get("outputs", [])
             if outputs.VIEW in o.get("data", {})]
    assert not views and "widgets" not in nb["metadata"], (
        f"{path.name} stores widget views (cells {views}), which the book can only show with "
        "scripts from a CDN: re-execute it with `gencourse execute`, which stores them as text")
