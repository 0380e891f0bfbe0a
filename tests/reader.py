"""The book as a reader sees it: each page opened in headless Chromium, checked and photographed.

Used by tests/test_browser.py. A page is opened from disk (file://) with every
http(s) request blocked, as on a laptop on a train, and tests/reader.js reports
what the reader would see. `check_page` turns that report into problems, one
sentence each:

- math: MathJax loaded from the book, finished, typeset every formula, no errors;
- raw LaTeX (\\frac, $x, x_{t}, ...) left in the prose outside typeset math;
- images and every frame of every animation load; animation buttons show an icon;
- figures are not shrunk so far that their text cannot be read at page width;
- no error in the browser console (script errors, failed loads, network requests);
- every link inside the book reaches an existing page and anchor;
- a notebook page's "Open in Colab" link points at that notebook.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
READER_JS = (HERE / "reader.js").read_text(encoding="utf-8")

HOW_TO_GET_ONE = (
    "no headless Chromium here, so the book's pages were not checked in a browser. "
    "Install Debian's packages: `sudo apt-get install chromium chromium-driver` "
    "(.ci/install-browser does it for CI), or point CHROME_BINARY and CHROMEDRIVER "
    "at a Chrome or Chromium and its matching chromedriver.")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1280, 900)  # a laptop screen: the article column is about 700 px wide
# A figure drawn much wider than its column is shrunk, and so are its labels: at 2x a
# 10 pt label is 7 px tall. Figures are drawn at 100 dpi, about 7 inches for 700 px.
MAX_SHRINK = 2.0
MAX_SCREENSHOT_HEIGHT = 30000  # px; taller pages are photographed from the top
SKIPPED_FOLDERS = ("_static", "_sources", "_images")


@dataclass
class PageReport:
    path: str                          # relative to the book's html folder
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    formulas: int = 0
    images: int = 0


def find_chromium():
    """(browser, chromedriver) paths, or None when either is missing."""
    browser = os.environ.get("CHROME_BINARY") or next(
        (path for path in map(shutil.which, BROWSERS) if path), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    runner_driver = Path(os.environ.get("CHROMEWEBDRIVER", "/nonexistent")) / "chromedriver"
    if driver is None and runner_driver.is_file():  # GitHub's Ubuntu runners
        driver = str(runner_driver)
    return (browser, driver) if browser and driver else None


def open_browser(browser: str, driver: str):
    """A headless Chromium that logs its console and blocks every request to the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(arg)
    # The console (script errors) and the performance log (every request the page makes).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_script_timeout(120)
    chrome.execute_cdp_cmd("Network.enable", {})
    chrome.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*"]})
    return chrome


def pages(html: Path) -> list[str]:
    """Every HTML page of a built book, relative to its html folder."""
    found = (p.relative_to(html).as_posix() for p in html.rglob("*.html"))
    return sorted(p for p in found if not p.startswith(SKIPPED_FOLDERS))


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.update(v for v in (attrs.get("id"), tag == "a" and attrs.get("name")) if v)


class AnchorIndex:
    """The ids that each page of the book defines, read once per page."""

    def __init__(self):
        self._ids: dict[Path, set[str]] = {}

    def __call__(self, page: Path) -> set[str]:
        if page not in self._ids:
            parser = _Anchors()
            parser.feed(page.read_text(encoding="utf-8", errors="replace"))
            self._ids[page] = parser.ids
        return self._ids[page]


def dead_links(links: list[str], html: Path, anchors: AnchorIndex) -> list[str]:
    """Links that stay in the book but reach no page, or no anchor on their page."""
    problems = []
    for url in links:
        parts = urlsplit(url)
        if parts.scheme != "file":
            continue  # the web, mail: not the book's to check
        target, fragment = Path(unquote(parts.path)), unquote(parts.fragment)
        where = target.relative_to(html).as_posix() if target.is_relative_to(html) else target
        if not target.exists():
            problems.append(f"link to a missing file: {where}")
        elif fragment and target.suffix == ".html" and fragment not in anchors(target):
            problems.append(f"link to a missing anchor: {where}#{fragment}")
    return problems


def console_problems(entries: list[dict]) -> list[str]:
    """Errors in the browser's console: script errors, failed loads, network requests."""
    problems = []
    for entry in entries:
        if entry.get("level") != "SEVERE":
            continue
        message = " ".join(entry.get("message", "").split())[:300]
        if "ERR_BLOCKED_BY_CLIENT" in message:
            problems.append(f"needs the network (the book must read offline): {message}")
        else:
            problems.append(f"console error: {message}")
    return problems


def network_problems(entries: list[dict]) -> list[str]:
    """Requests that leave the machine: a book read offline must need none."""
    urls = []
    for entry in entries:
        event = json.loads(entry["message"])["message"]
        if event.get("method") == "Network.requestWillBeSent":
            url = event["params"]["request"]["url"]
            if urlsplit(url).scheme in ("http", "https", "ws", "wss"):
                urls.append(url)
    return [f"needs the network (the book must read offline): {url[:200]}"
            for url in dict.fromkeys(urls)]


def redirect_target(page: Path) -> str | None:
    """Where a redirect page (Jupyter Book's index.html) sends the reader, if it is one."""
    head = page.read_text(encoding="utf-8", errors="replace")[:2000]
    match = re.search(r'http-equiv="refresh"[^>]*url=([^"\s]+)"', head, re.IGNORECASE)
    return match.group(1) if match else None


def report_problems(report: dict) -> list[str]:
    """What reader.js saw, as one sentence per problem."""
    if "failed" in report:
        return [f"the page could not be checked: {report['failed']}"]
    math = report["math"]
    problems = [f"math error: {error}" for error in math["errors"]]
    if math["untypeset"]:
        problems.append(f"{len(math['untypeset'])} formula(s) not typeset, the first: "
                        f"{math['untypeset'][0]!r}")
    problems += [f"raw LaTeX in the text: ...{text}..." for text in report["rawLatex"]]
    for image in report["images"]:
        if not image["ok"]:
            problems.append(f"image does not load: {image['src']}")
        elif image["shown"] and image["natural"] / image["shown"] > MAX_SHRINK:
            problems.append(
                f"figure drawn {image['natural']} px wide is shown at {image['shown']:.0f} px, "
                f"too small to read (redraw it narrower): {image['src'][:80]}")
    for i, anim in enumerate(report["animations"], 1):
        if not anim["started"]:
            problems.append(f"animation {i} did not start (its script failed)")
        if anim["broken"]:
            problems.append(f"animation {i}: {anim['broken']} of {anim['frames']} frames "
                            "do not load")
        if anim["blankButtons"]:
            problems.append(f"animation {i}: buttons without an icon: {anim['blankButtons']}")
    return problems


def screenshot(chrome, height: int, path: Path) -> None:
    """A PNG of the whole page (up to MAX_SCREENSHOT_HEIGHT), not just the window."""
    clip = {"x": 0, "y": 0, "width": WINDOW[0], "height": min(max(height, 1),
                                                              MAX_SCREENSHOT_HEIGHT), "scale": 1}
    shot = chrome.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


def check_page(chrome, html: Path, page: str, anchors: AnchorIndex, *,
               colab_link: str | None = None, screenshots: Path | None = None) -> PageReport:
    """Open one page as a reader would and list what is wrong with it."""
    start = time.perf_counter()
    target = redirect_target(html / page)
    if target is not None:  # nothing to read: it only has to lead somewhere
        missing = not (html / page).parent.joinpath(target).is_file()
        return PageReport(page, [f"redirects to a missing page: {target}"] if missing else [])
    for log in ("browser", "performance"):
        chrome.get_log(log)  # forget what the previous page logged
    chrome.get((html / page).as_uri())
    report = chrome.execute_async_script(READER_JS)
    problems = report_problems(report)
    if "failed" not in report:
        problems += dead_links(report["links"], html, anchors)
        if colab_link is not None:
            problems += colab_problems(report["links"], colab_link)
        if screenshots is not None:
            screenshot(chrome, report["height"], screenshots / (page.replace("/", "__") + ".png"))
    problems += console_problems(chrome.get_log("browser"))
    problems += network_problems(chrome.get_log("performance"))
    return PageReport(page, problems, time.perf_counter() - start,
                      report.get("math", {}).get("count", 0), len(report.get("images", [])))


def colab_problems(links: list[str], expected: str) -> list[str]:
    """A notebook page must open its own notebook in Colab, and no other."""
    colab = sorted({url for url in links if "colab.research.google.com" in url})
    problems = [] if expected in colab else [f"no Colab link to this notebook ({expected})"]
    return problems + [f"a Colab link to another notebook: {url}" for url in colab
                       if url != expected]
