"""What a page shows, checked in its source before any build.

- Inline math that continues on a line starting with `+`, `-`, `*` or `1.`
  turns that line into a list item: the page shows half a formula and a
  stray bullet (chapter 2 once did).
- Code lines of chapters, labs and solutions stay under LINE_LIMIT
  characters, so that they fit their boxes at page width.

Pages are found by glob (book/*.md, labs/, solutions/), so new chapters and
labs are covered without editing this file.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest

from gencourse.course.labs import LINE_LIMIT

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "labs").glob("*.ipynb"))
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
LIST_START = re.compile(r"^\s*([-+*]|\d+[.)](\s|$))")
CODE_SPAN = re.compile(r"(`+).*?\1")


def name(path):
    return path.relative_to(ROOT).as_posix()


def markdown_cells(path):
    """(first line number, text) of each Markdown block of a chapter or notebook."""
    if path.suffix == ".md":
        return [(1, path.read_text(encoding="utf-8"))]
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"]


def fences(text):
    """(line number, line, info) of each line, info being the info string of the backtick or
    tilde fence the line is inside ("python", "{code-cell} ipython3"), or None outside fences."""
    out, fence, info = [], None, None
    for number, line in enumerate(text.split("\n"), 1):
        opener = FENCE.match(line)
        if fence is None and opener:
            fence, info = opener.group(1), line.strip()[len(opener.group(1)):].strip()
            out.append((number, line, None))
        elif fence is not None and line.strip() and set(line.strip()) == {fence[0]} \
                and len(line.strip()) >= len(fence):
            fence, info = None, None
            out.append((number, line, None))
        else:
            out.append((number, line, info if fence is not None else None))
    return out


def list_items_in_inline_math(text):
    """(line number, line) of each line that starts like a list item inside inline $...$.

    Fenced blocks and `code spans` are skipped, and so is display math ($$ on
    its own line); a blank line ends a paragraph, and inline math with it.
    """
    found, inside, display = [], False, False
    for number, line, info in fences(text):
        if info is not None or FENCE.match(line):
            inside = False
            continue
        if line.strip().startswith("$$") and not inside:
            one_line = len(line.strip()) > 2 and line.strip().endswith("$$")
            display = display if one_line else not display
            continue
        if display:
            continue
        if not line.strip():
            inside = False
            continue
        if inside and LIST_START.match(line):
            found.append((number, line))
        prose = CODE_SPAN.sub("", line.replace("\\$", ""))
        inside ^= prose.count("$") % 2 == 1
    return found


def test_the_checker_finds_a_formula_broken_into_a_list():
    broken = "a second\ngives $x_2 = a\n+ b$, and the two terms\n- c\n"
    assert list_items_in_inline_math(broken) == [(3, "+ b$, and the two terms")]
    assert list_items_in_inline_math("gives $x = a\n1. b$ again") == [(2, "1. b$ again")]
    assert list_items_in_inline_math("gives $x = a +\nb$\n- a real item\n") == []
    assert list_items_in_inline_math("costs `$5`\n- item\n") == []
    assert list_items_in_inline_math("$$\nx = a\n+ b\n$$\n") == []
    assert list_items_in_inline_math("```python\nx = '$'\n- 1\n```\n- item $a$\n") == []


@pytest.mark.parametrize("path", CHAPTERS + NOTEBOOKS, ids=name)
def test_no_line_of_inline_math_starts_like_a_list_item(path):
    found = [(start + n - 1 if path.suffix == ".md" else f"cell {start}, line {n}", line)
             for start, text in markdown_cells(path)
             for n, line in list_items_in_inline_math(text)]
    assert not found, (
        f"{name(path)}: inline math continues on a line that Markdown reads as a list item "
        f"(the page would show half a formula and a bullet); end the line before with the "
        f"operator instead: {found}")


def chapter_code_lines(path):
    """(line number, line) of the code of a chapter: {code-cell}s and plain ``` blocks."""
    return [(number, line) for number, line, info in fences(path.read_text(encoding="utf-8"))
            if info is not None and (not info.startswith("{") or info.startswith("{code-cell}"))]


def notebook_code_lines(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(f"cell {i}", line) for i, cell in enumerate(cells) if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).split("\n")]


@pytest.mark.parametrize("path", CHAPTERS + NOTEBOOKS, ids=name)
def test_code_lines_fit_the_page(path):
    lines = chapter_code_lines(path) if path.suffix == ".md" else notebook_code_lines(path)
    long = [(where, len(line)) for where, line in lines if len(line) >= LINE_LIMIT]
    assert not long, (
        f"{name(path)}: code lines of {LINE_LIMIT} characters or more run off their box in the "
        f"book; wrap them (where, length): {long}")


def test_chapter_code_lines_are_found():
    """The width check reads code cells and plain fences, and not the prose between them."""
    chapter = ROOT / "book" / "01_autoregressive.md"
    lines = [line for _, line in chapter_code_lines(chapter)]
    assert any("import torch" in line for line in lines)
    assert not any(line.startswith("# ") and "Autoregressive" in line for line in lines)


def test_usings_example_exercise_is_one_a_lab_has():
    """book/using.md shows a learner what a TODO looks like: it is a real one, word for word."""
    text = (ROOT / "book" / "using.md").read_text(encoding="utf-8")
    example = re.search(r"## How a lab is laid out.*?```python\n(.*?)```", text, re.S).group(1).strip()
    number = re.search(r'"Exercise (\d+)\.\d+', example).group(1)
    lab = next((ROOT / "labs").glob(f"{int(number):02d}_*.ipynb"))
    sources = [c.source for c in nbformat.read(lab, as_version=4).cells if c.cell_type == "code"]
    assert any(source.strip() == example for source in sources), f"not a cell of {lab.name}"


def test_every_book_page_of_the_toc_is_checked():
    """The checks above read every Markdown page that _toc.yml puts in the book (the intro, the
    notation page and the chapters among them), so none can escape them."""
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    entries = re.findall(r"^\s*(?:root|-\s*file):\s*(book/\S+)", toc, flags=re.MULTILINE)
    pages = {ROOT / f"{entry}.md" for entry in entries if (ROOT / f"{entry}.md").is_file()}
    assert {"intro.md", "notation.md", "01_autoregressive.md", "02_diffusion.md"} <= \
        {p.name for p in pages}, f"_toc.yml lists these book pages: {sorted(entries)}"
    assert pages <= set(CHAPTERS), f"not checked: {sorted(map(name, pages - set(CHAPTERS)))}"
