"""The book as a reader sees it: every page of the built book, opened in headless Chromium.

Each page is opened from disk with the network blocked and checked by
tests/reader.py: math typeset without errors, no raw LaTeX in the prose,
every image and animation frame loaded, animation buttons drawn, figures
legible at page width, no console errors, no request to the network, every
link inside the book alive, and a notebook page's Colab link pointing at that
notebook. A full-page screenshot of each page goes to _build/screenshots/
(uploaded by the test workflow), with summary.txt: pages, problems, seconds.

The first tests prove that the checker fails when it should, on two tiny
pages, in a few seconds. Without Chromium and chromedriver every test here is
skipped with a message saying how to install them (.ci/install-browser does).
"""

import importlib.util
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml

import reader
from gencourse import plot

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
COLAB = "https://colab.research.google.com/github/o/n/blob/main/labs/x.ipynb"
PNG_1PX = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
           "nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def chrome():
    found = reader.find_chromium()
    if found is None:
        pytest.skip(reader.HOW_TO_GET_ONE)
    browser = reader.open_browser(*found)
    yield browser
    browser.quit()


def mathjax_script():
    """The MathJax that the book ships (sphinx-mathjax-offline), as a file:// URL."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    assert spec is not None, "sphinx-mathjax-offline is not installed (requirements.txt)"
    return (Path(spec.submodule_search_locations[0]) / "static" / "mathjax"
            / "tex-chtml.js").as_uri()


def tiny_book(tmp_path, body, extra_head=""):
    """A one-page book: page.html with `body`, a target page with an anchor, MathJax."""
    (tmp_path / "target.html").write_text('<html><body><h1 id="here">here</h1></body></html>')
    (tmp_path / "page.html").write_text(
        f'<html><head><script defer src="{mathjax_script()}"></script>{extra_head}</head>'
        f'<body><main>{body}</main></body></html>', encoding="utf-8")
    return tmp_path


def problems_of(chrome, html, colab_link=None):
    return reader.check_page(chrome, html, "page.html", reader.AnchorIndex(),
                             colab_link=colab_link).problems


def test_a_good_page_passes(chrome, tmp_path):
    animation = plot.animate([torch.rand(2, 1, 8, 8) for _ in range(3)]).data
    html = tiny_book(tmp_path, f"""
        <p>A fraction <span class="math notranslate nohighlight">\\(\\frac{{a}}{{b}}\\)</span>
           costs $5, and <code>$x</code> is code.</p>
        <img src="{PNG_1PX}" width="1"><a href="target.html#here">there</a><a href="#top">up</a>
        <a id="top" href="{COLAB}">C</a>
        {animation}""")
    colab = COLAB
    assert problems_of(chrome, html, colab_link=colab) == []


@pytest.fixture(scope="module")
def bad_page_problems(chrome, tmp_path_factory):
    """Every defect the checker must catch, on one page."""
    stock_player = (  # matplotlib's own player: icons from a CDN
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/font-awesome/4.4.0/css/'
        'font-awesome.min.css"><div class="anim-buttons"><button title="Play">'
        '<i class="fa fa-play"></i></button></div>')
    html = tiny_book(tmp_path_factory.mktemp("bad"), f"""
        <p>Left over: $\\frac{{a}}{{b}}$.</p><p>A subscript x_{{t}} too.</p>
        <p><span class="math notranslate nohighlight">\\(\\frac{{a}}{{\\nosuchmacro}}\\)</span>
           <span class="math notranslate nohighlight">\\(x^2^3\\)</span></p>
        <img src="missing.png"><img src="{PNG_1PX}" width="1">
        <a href="target.html#nowhere">dead anchor</a><a href="gone.html">dead page</a>
        <a href="https://colab.research.google.com/github/o/n/blob/main/labs/other.ipynb">C</a>
        <script>undefinedFunction();</script>{stock_player}""")
    return problems_of(chrome, html, colab_link="https://colab.research.google.com/x.ipynb")


@pytest.mark.parametrize("expected", [
    "raw LaTeX in the text: ...Left over: $\\frac{a}{b}$.",
    "raw LaTeX in the text: ...A subscript x_{t} too.",
    "undefined macro \\nosuchmacro",
    "math error: Double exponent: use braces to clarify in x^2^3",
    "image does not load: missing.png",
    "link to a missing anchor: target.html#nowhere",
    "link to a missing file: gone.html",
    "console error:",
    "undefinedFunction is not defined",
    "needs the network (the book must read offline): https://maxcdn.bootstrapcdn.com",
    "no Colab link to this notebook",
    "a Colab link to another notebook",
])
def test_the_checker_catches(bad_page_problems, expected):
    assert any(expected in problem for problem in bad_page_problems), (
        f"the checker missed {expected!r}; it reported:\n" + "\n".join(bad_page_problems))


def test_an_animation_without_its_icons_is_caught(chrome, tmp_path):
    player = ('<img id="_anim_imgX" src="{png}"><div class="anim-buttons"><button title="Play">'
              '<i class="fa fa-play"></i></button></div><script>var animX = {{frames: []}};'
              '</script>').format(png=PNG_1PX)
    problems = problems_of(chrome, tiny_book(tmp_path, f'<div>{player}</div>'))
    assert any("buttons without an icon: ['Play']" in p for p in problems), problems


def test_an_oversized_figure_is_caught():
    report = {"math": {"errors": [], "untypeset": []}, "rawLatex": [], "animations": [],
              "images": [{"src": "../_images/strip.png", "ok": True, "natural": 1970,
                          "shown": 688}]}
    assert any("1970 px wide is shown at 688 px" in p for p in reader.report_problems(report))


# ----------------------------------------------------------------------------- the book

def colab_link(page):
    """The Colab link a notebook page must carry (None for a page that is not a notebook)."""
    notebook = ROOT / Path(page).with_suffix(".ipynb")
    if not notebook.is_file():
        return None
    repo = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
    owner_name = repo["url"].removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{owner_name}/blob/{repo['branch']}/"
            f"{notebook.relative_to(ROOT).as_posix()}")


def summary(reports, seconds):
    lines = [f"{len(reports)} pages checked in {seconds:.0f} s (headless Chromium, offline)", ""]
    for r in reports:
        lines.append(f"{r.path:40s} {r.seconds:5.1f} s  {r.formulas:4d} formulas  "
                     f"{r.images:3d} images  {len(r.problems)} problems")
        lines += [f"    {problem}" for problem in r.problems]
    return "\n".join(lines) + "\n"


@pytest.mark.book
def test_every_page_reads_offline(book_build, chrome):
    rc, log, html = book_build
    assert rc == 0, f"the book did not build (see test_book_builds_cleanly):\n{log[-3000:]}"
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    anchors, start = reader.AnchorIndex(), time.perf_counter()
    reports = [reader.check_page(chrome, html, page, anchors, colab_link=colab_link(page),
                                 screenshots=SCREENSHOTS) for page in reader.pages(html)]
    text = summary(reports, time.perf_counter() - start)
    (SCREENSHOTS / "summary.txt").write_text(text, encoding="utf-8")
    print(text)
    assert any(r.path.startswith("labs/") for r in reports), "no lab page was checked"
    assert sum(r.formulas for r in reports) > 100, "the book's formulas were not found"
    failed = [r for r in reports if r.problems]
    assert not failed, (f"{len(failed)} of {len(reports)} pages do not read well "
                        f"(screenshots in {SCREENSHOTS}):\n" + summary(failed, 0))
