"""The book: its configuration, its citations, and a full clean build.

The fast tests read _config.yml, _toc.yml, the chapters and references.bib.
The build tests (marked `book`) read the HTML of the session's one build
(the `book_build` fixture of tests/conftest.py, a few minutes), which
tests/test_browser.py then opens in a browser.
Select them with `pytest -m book`, leave them out with `-m "not book"`.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
CITE_ROLE = re.compile(r"(?<!`)\{(?:cite|footcite)(?::[a-z]+)?\}`([^`]+)`")
BIB_KEY = re.compile(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


def config():
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_files():
    """Every `file:` of _toc.yml (the root included), as written there."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def source_of(entry):
    """The file behind a toc entry (entries name files without their suffix)."""
    for suffix in ("", ".md", ".ipynb"):
        path = ROOT / f"{entry}{suffix}"
        if path.is_file():
            return path
    return None


def bib_keys():
    entries = [m.group(2) for m in BIB_KEY.finditer(BIB.read_text(encoding="utf-8"))
               if m.group(1).lower() not in ("comment", "preamble", "string")]
    return entries


def cited_keys(text):
    return {key.strip() for m in CITE_ROLE.finditer(text) for key in m.group(1).split(",")}


def page_texts():
    """(path, prose) of every chapter and notebook that the book may cite from."""
    out = [(p, p.read_text(encoding="utf-8")) for p in sorted((ROOT / "book").rglob("*.md"))]
    for folder in ("solutions", "labs"):
        for p in sorted((ROOT / folder).glob("*.ipynb")):
            cells = json.loads(p.read_text(encoding="utf-8"))["cells"]
            out.append((p, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    return out


# ----------------------------------------------------------------------------- fast checks

def test_repository_url_is_a_github_https_url():
    repo = config()["repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo["url"]), (
        f"_config.yml repository.url must be https://github.com/OWNER/NAME (no trailing slash or .git), "
        f"got {repo['url']!r}")
    assert repo.get("branch"), "_config.yml repository.branch must name the branch launch links use"


def test_launch_buttons_and_execution_settings():
    cfg = config()
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    execute = cfg["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert {"solutions/*", "labs/*"} <= set(execute["exclude_patterns"]), (
        "solutions must render their stored outputs and labs must render unexecuted")
    assert cfg["bibtex_bibfiles"] == ["book/references.bib"]


def test_every_toc_entry_exists():
    missing = [entry for entry in toc_files() if source_of(entry) is None]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_references_bib_has_unique_keys():
    keys = bib_keys()
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert len(keys) >= 30, f"references.bib holds only {len(keys)} entries"
    assert not duplicates, f"references.bib defines these keys twice: {duplicates}"


def test_every_cited_key_is_in_references_bib():
    known = set(bib_keys())
    unknown = {}
    for path, text in page_texts():
        missing = sorted(cited_keys(text) - known)
        if missing:
            unknown[str(path.relative_to(ROOT))] = missing
    assert not unknown, f"cited but not in book/references.bib: {unknown}"


def test_one_bibliography_for_the_whole_book():
    # Several {bibliography} directives citing the same paper give
    # "duplicate citation" warnings, which fail the -W build.
    directive = re.compile(r"^\s*(`{3,}|:{3,})\{bibliography\}", re.MULTILINE)
    pages = [str(p.relative_to(ROOT)) for p, text in page_texts() if directive.search(text)]
    assert pages == ["book/references.md"], (
        f"only book/references.md may hold a {{bibliography}} directive, found it in {pages}")


# ----------------------------------------------------------------------------- the build

def sphinx_warnings(log):
    """Lines of the build log that report a warning or an error from the build itself.

    A kernel started for execution logs its own notices (ipykernel >= 7 says
    "[IPKernelApp] WARNING | Kernel is running over TCP without encryption")
    on the build's stderr; they are not Sphinx warnings and -W ignores them.
    """
    return [line for line in log.splitlines()
            if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)
            and not line.lstrip().startswith("[IPKernelApp]")]


@pytest.fixture
def built(book_build):
    """The one build of the session (tests/conftest.py), shared with tests/test_browser.py."""
    return book_build


@pytest.mark.book
def test_book_builds_cleanly(built):
    rc, log, _ = built
    assert rc == 0, f"jupyter-book build failed (exit {rc}):\n{log[-6000:]}"
    warnings = sphinx_warnings(log)
    assert not warnings, "the build warned:\n" + "\n".join(warnings[:40])


@pytest.mark.book
def test_intro_and_using_pages(built):
    rc, log, html = built
    assert rc == 0, log[-3000:]
    intro = (html / "book" / "intro.html").read_text(encoding="utf-8")
    using = (html / "book" / "using.html").read_text(encoding="utf-8")
    references = (html / "book" / "references.html").read_text(encoding="utf-8")
    assert "Deep generative models" in intro
    assert len(re.findall(r"<img [^>]*src=\"\.\./_images/", intro)) >= 3, "intro should show its figures"
    assert 'href="references.html#' in intro, "intro's citations should link to the references page"
    assert 'class="math' in intro, "intro's equations should be rendered as math"
    assert "_static/gencourse.css" in intro, "the book's stylesheet (hides .md launch links) is not loaded"
    assert "Vaswani" in references and "Goodfellow" in references, "references.html lacks the bibliography"
    words = visible_text(using)
    for phrase in ("gencourse grade labs/00_toolkit.ipynb", "GENCOURSE_PROFILE", "gencourse workflow"):
        assert phrase in words, f"using.html should mention {phrase!r}"


def visible_text(html):
    """The words of an HTML page, tags dropped and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.book
def test_lab_pages_have_colab_links(built):
    rc, log, html = built
    assert rc == 0, log[-3000:]
    labs = [e for e in toc_files() if e.startswith("labs/")]
    if not labs:
        pytest.skip("no lab in _toc.yml yet")
    repo, branch = config()["repository"]["url"], config()["repository"]["branch"]
    for entry in labs:
        page = (html / f"{entry}.html").read_text(encoding="utf-8")
        owner_name = repo.removeprefix("https://github.com/")
        link = f"https://colab.research.google.com/github/{owner_name}/blob/{branch}/{entry}.ipynb"
        assert link in page, f"{entry}.html has no Colab launch link {link}"
