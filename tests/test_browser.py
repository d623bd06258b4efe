"""The rendered book in a real browser: every page of the table of contents opened in headless Chromium.

A page passes when it loads without a JavaScript error, a SEVERE console entry or a failed request, when
every ``<img>`` decodes, and when every link to the book itself answers 200 and lands on an anchor that
exists. A full-page screenshot of each page is written to ``build/screenshots/<page>.png``.

Every formula must be typeset by the MathJax the book serves itself (``sphinx-mathjax-offline``): the pages
may fetch nothing from another host.

The browser and its driver are found through ``RS_REPRO_CHROME`` and ``RS_REPRO_CHROMEDRIVER`` (Debian's
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` by default; ``make test`` installs them when it can,
``tests/install_browser.sh``). Without them one test fails with the instruction that fixes it and the
others are skipped. The browser is kept off the network: only the book's own server on 127.0.0.1
resolves, so the test gives the same answer online and offline.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from rs_repro.pipeline import book, paths

CHROME_ENV = "RS_REPRO_CHROME"
DRIVER_ENV = "RS_REPRO_CHROMEDRIVER"
CHROME_DEFAULT = "/usr/bin/chromium"
DRIVER_DEFAULT = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
SCREENSHOTS = paths.ROOT / "build" / "screenshots"
#: The one instruction that makes the browser test runnable on Debian or Ubuntu.
INSTALL = "sudo apt-get install -y chromium chromium-driver"
#: The page that must hold typeset formulas (the theory chapter's equations).
MATH_PAGE = "book/chapters/theory"

#: Makes every image load now (lazy ones too), waits for each to load or fail, returns the undecoded ones.
BROKEN_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(img => { img.loading = "eager"; });
Promise.all(images.map(img => img.complete ? null : new Promise(resolve => {
    img.addEventListener("load", resolve);
    img.addEventListener("error", resolve);
}))).then(() => done(images.filter(img => img.naturalWidth === 0).map(img => img.currentSrc || img.src)));
"""


def toc_pages(toc: dict) -> list[str]:
    """Every page of a Jupyter Book table of contents, root first, as document names without suffix."""
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return [page.removesuffix(".md").removesuffix(".ipynb") for page in pages]


PAGES = toc_pages(yaml.safe_load((paths.ROOT / "_toc.yml").read_text(encoding="utf-8")))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of one line per request."""


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) from a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def browser_paths() -> tuple[Path, Path]:
    """The browser and the driver the test uses (``RS_REPRO_CHROME``, ``RS_REPRO_CHROMEDRIVER``)."""
    return Path(os.environ.get(CHROME_ENV, CHROME_DEFAULT)), Path(os.environ.get(DRIVER_ENV, DRIVER_DEFAULT))


def missing_browser() -> list[str]:
    """The executables of :func:`browser_paths` that are missing, each with the variable that moves it."""
    return [f"{path} (or set {env})" for path, env in zip(browser_paths(), (CHROME_ENV, DRIVER_ENV))
            if not (path.is_file() and os.access(path, os.X_OK))]


def test_chromium_and_chromedriver_are_installed():
    """The one test that fails when the browser is absent (the browser tests are then skipped)."""
    missing = missing_browser()
    if missing:
        pytest.fail(f"the browser test needs Chromium and chromedriver, missing: {', '.join(missing)}. "
                    f"Install them with: {INSTALL}", pytrace=False)


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium driven by chromedriver, with a fresh profile.

    Without them the browser tests are skipped: :func:`test_chromium_and_chromedriver_are_installed`
    fails once instead, with the instruction that fixes it.
    """
    if missing_browser():
        pytest.skip("Chromium or chromedriver is missing: see test_chromium_and_chromedriver_are_installed")
    chrome, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chrome)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    session = webdriver.Chrome(options=options,
                               service=Service(executable_path=str(driver), log_output=subprocess.DEVNULL))
    session.set_page_load_timeout(60)
    session.set_script_timeout(60)
    try:
        yield session
    finally:
        session.quit()


def _tolerated(text: str, page: str) -> bool:
    """Whether a failure is the icon Chromium asks every site for (the book has none at the server root)."""
    return urllib.parse.urljoin(page, "/favicon.ico") in text


def _failed_requests(performance_log: list[dict]) -> list[str]:
    """HTTP(S) requests that failed or answered >= 400, from Chromium's DevTools network events.

    Requests of other schemes are the browser's own (its new-tab page) and are left out.
    """
    urls, failed = {}, []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        event, params = message["method"], message.get("params", {})
        if event == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif event == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append((params["response"]["url"], f"HTTP {params['response']['status']}"))
        elif event == "Network.loadingFailed":
            failed.append((urls.get(params["requestId"], ""), params["errorText"]))
    return [f"{url}: {error}" for url, error in failed if url.startswith(("http://", "https://"))]


def _requested(performance_log: list[dict]) -> list[str]:
    """Every HTTP(S) URL the page asked for, from Chromium's DevTools network events."""
    urls = (json.loads(entry["message"])["message"] for entry in performance_log)
    return [m["params"]["request"]["url"] for m in urls if m["method"] == "Network.requestWillBeSent"
            and m["params"]["request"]["url"].startswith(("http://", "https://"))]


#: Waits until MathJax (if the page loads it) has typeset the page, then reports on every formula: the
#: ``.math`` elements Sphinx writes, how many hold no MathJax output, and raw TeX delimiters left in the
#: text of the article (code cells and MathJax's own output left out).
MATH_JS = """
const done = arguments[arguments.length - 1];
const report = () => {
    const formulas = Array.from(document.querySelectorAll(".math"));
    const article = (document.querySelector("article") || document.body).cloneNode(true);
    article.querySelectorAll("pre, code, script, style, .cell_input, mjx-container").forEach(e => e.remove());
    done({formulas: formulas.length, containers: document.querySelectorAll("mjx-container").length,
          untypeset: formulas.filter(e => !e.querySelector("mjx-container")).map(e => e.textContent.trim()),
          text: article.textContent});
};
const started = Date.now();
const wait = () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
        MathJax.startup.promise.then(report, report);
    } else if (!document.querySelector(".math") || Date.now() - started > 30000) {
        report();
    } else {
        setTimeout(wait, 100);
    }
};
wait();
"""
#: Raw TeX a reader must never see: display and inline delimiters that MathJax did not replace.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\$[^$\s][^$\n]*\$")


def math_problems(report: dict) -> list[str]:
    """Formulas left untypeset and raw TeX in the text, from the result of :data:`MATH_JS`."""
    problems = [f"formula not typeset: {text[:60]!r}" for text in report["untypeset"]]
    problems += [f"raw TeX on the page: {m.group()[:60]!r}" for m in RAW_TEX.finditer(report["text"])]
    return problems


#: The tallest screenshot taken, in CSS pixels: Chromium cannot capture a taller one (the API reference is
#: taller; its screenshot shows the top of it).
MAX_SHOT_HEIGHT = 16_000


def _screenshot(session: webdriver.Chrome, path: Path) -> None:
    """A PNG of the whole page, beyond the window's height (DevTools ``Page.captureScreenshot``), or of its
    first :data:`MAX_SHOT_HEIGHT` pixels."""
    size = session.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], MAX_SHOT_HEIGHT), "scale": 1}
    shot = session.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                              "captureBeyondViewport": True,
                                                              "optimizeForSpeed": True})
    path.write_bytes(base64.b64decode(shot["data"]))


def open_page(session: webdriver.Chrome, url: str, screenshot: Path) -> tuple[list[str], list[str], dict]:
    """Load ``url``, save its screenshot.

    Returns
    -------
    tuple
        The problems found on the page, every link it holds, and the report of :data:`MATH_JS`.
    """
    session.get_log("browser"), session.get_log("performance")  # forget the previous page's entries
    session.get(url)
    broken = session.execute_async_script(BROKEN_IMAGES_JS)
    math = session.execute_async_script(MATH_JS)
    links = session.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href);")
    _screenshot(session, screenshot)
    network = session.get_log("performance")
    host = urllib.parse.urlsplit(url).netloc
    problems = [f"image does not load: {src}" for src in broken]
    problems += [f"console {e['level']}: {e['message']}" for e in session.get_log("browser")
                 if e["level"] == "SEVERE" and not _tolerated(e["message"], url)]
    problems += [f"request failed: {failure}" for failure in _failed_requests(network)
                 if not _tolerated(failure, url)]
    problems += [f"request to another host: {u}" for u in _requested(network) if urllib.parse.urlsplit(u).netloc != host]
    problems += math_problems(math)
    return problems, links, math


class _Anchors(HTMLParser):
    """The anchors of an HTML page: every ``id`` and every ``<a name>``."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is not None and (key == "id" or (tag == "a" and key == "name")):
                self.names.add(value)


@functools.cache
def _fetch(url: str) -> tuple[int, frozenset[str]]:
    """HTTP status of ``url`` and, for an HTML page, its anchors."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
            if response.headers.get_content_type() != "text/html":
                return response.status, frozenset()
            parser = _Anchors()
            parser.feed(body.decode("utf-8", errors="replace"))
            return response.status, frozenset(parser.names)
    except urllib.error.HTTPError as err:
        return err.code, frozenset()


def broken_links(links: list[str], base: str) -> list[str]:
    """Links under ``base`` that do not answer 200, or whose ``#fragment`` is no anchor of the target."""
    problems = []
    for link in sorted(set(links)):
        if not link.startswith(base):
            continue
        target, _, fragment = link.partition("#")
        status, anchors = _fetch(target)
        if status != 200:
            problems.append(f"link {link}: HTTP {status}")
        elif fragment and urllib.parse.unquote(fragment) not in anchors:
            problems.append(f"link {link}: no anchor #{urllib.parse.unquote(fragment)} on the target page")
    return problems


def test_toc_pages_cover_the_root_and_every_chapter():
    assert PAGES[0] == "book/intro"
    assert [p.removeprefix("book/chapters/") for p in PAGES if p.startswith("book/chapters/")] == book.chapters()
    assert len({Path(p).name for p in PAGES}) == len(PAGES), "screenshots are named after the page"
    nested = {"root": "a", "chapters": [{"file": "b.md", "sections": [{"file": "c"}]}]}
    assert toc_pages(nested) == ["a", "b", "c"]


BROKEN_SITE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>broken</title>
<link rel="stylesheet" href="missing.css">
<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script></head><body>
<div class="math notranslate nohighlight">\\[\\pi_0(x) > 1/2\\]</div><p>inline $x_a$ left raw</p>
<img src="fine.png" alt="decodes"><img src="missing.png" alt="404">
<a href="other.html#there">good</a> <a href="other.html#nowhere">bad anchor</a> <a href="gone.html">404</a>
<a href="https://example.org/">outside the book, not followed</a>
<script>undefinedFunction();</script></body></html>"""
CLEAN_SITE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>clean</title>
<script async src="mathjax/tex-chtml.js"></script></head><body>
<h1 id="there">There</h1><img src="fine.png" alt="decodes"><a href="index.html">back</a>
<div class="math notranslate nohighlight">\\[R = \\sigma\\,\\Phi^{-1}(\\underline{p_A})\\]</div>
<pre>code may hold $dollars$ and \\(delimiters\\)</pre></body></html>"""


def _offline_mathjax() -> Path:
    """The MathJax that ``sphinx-mathjax-offline`` copies into the book (its package folder is not a
    valid module name, so it is found by its distribution's files)."""
    files = metadata.files("sphinx-mathjax-offline") or []
    loader = next(f for f in files if f.name == "tex-chtml.js" and f.parent.name == "mathjax")
    return Path(loader.locate()).parent


def test_checks_find_each_planted_fault(browser, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(BROKEN_SITE)
    (site / "other.html").write_text(CLEAN_SITE)
    shutil.copytree(_offline_mathjax(), site / "mathjax")
    matplotlib.image.imsave(site / "fine.png", np.zeros((4, 4, 3)))
    with serve(site) as base:
        problems, links, _ = open_page(browser, base + "index.html", tmp_path / "index.png")
        problems += broken_links(links, base)
        clean, clean_links, math = open_page(browser, base + "other.html", tmp_path / "other.png")
        clean += broken_links(clean_links, base)
    assert clean == []
    assert math["formulas"] == 1 and math["containers"] == 1
    expected = [f"image does not load: {base}missing.png", f"link {base}gone.html: HTTP 404",
                f"link {base}other.html#nowhere: no anchor #nowhere on the target page",
                f"request failed: {base}missing.css: HTTP 404", f"request failed: {base}missing.png: HTTP 404"]
    assert all(p in problems for p in expected), problems
    assert any("Uncaught ReferenceError: undefinedFunction is not defined" in p for p in problems), problems
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"
    assert f"request to another host: {cdn}" in problems and any(p.startswith(f"request failed: {cdn}") for p in problems)
    assert "formula not typeset: '\\\\[\\\\pi_0(x) > 1/2\\\\]'" in problems, problems
    assert "raw TeX on the page: '$x_a$'" in problems, problems
    assert not any("example.org" in p for p in problems)
    assert (tmp_path / "index.png").read_bytes().startswith(b"\x89PNG")


@pytest.fixture(scope="session")
def smoke_site(smoke_html) -> Iterator[str]:
    """The smoke book's HTML served on 127.0.0.1; an empty screenshot folder beside it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    with serve(smoke_html.parent) as base:
        yield base


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_book_page_in_chromium(browser, smoke_site, page):
    screenshot = SCREENSHOTS / f"{Path(page).name}.png"
    problems, links, math = open_page(browser, f"{smoke_site}{page}.html", screenshot)
    problems += broken_links(links, smoke_site)
    assert problems == [], "\n".join(problems)
    if page == MATH_PAGE:
        assert math["formulas"] > 10 and math["containers"] >= math["formulas"], math
    assert screenshot.stat().st_size > 0
