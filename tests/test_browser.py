"""The rendered book in a real browser: every page of the table of contents opened in headless Chromium.

A page passes when it loads without a JavaScript error, a SEVERE console entry or a failed request, when
every ``<img>`` decodes, and when every link to the book itself answers 200 and lands on an anchor that
exists. A full-page screenshot of each page is written to ``build/screenshots/<page>.png``.

The browser and its driver are found through ``RS_REPRO_CHROME`` and ``RS_REPRO_CHROMEDRIVER`` (Debian's
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` by default). The browser is kept off the network: only
the book's own server on 127.0.0.1 resolves, so the test gives the same answer online and offline.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from rs_repro import book, paths

CHROME_ENV = "RS_REPRO_CHROME"
DRIVER_ENV = "RS_REPRO_CHROMEDRIVER"
CHROME_DEFAULT = "/usr/bin/chromium"
DRIVER_DEFAULT = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
SCREENSHOTS = paths.ROOT / "build" / "screenshots"
#: What the pages may fetch from outside the book: MathJax from the default CDN of Sphinx's mathjax
#: extension. The browser is offline, so these requests fail, and they are the only failures tolerated.
EXTERNAL_ALLOWED = ("https://cdn.jsdelivr.net/npm/mathjax@3/",)

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


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium driven by chromedriver, with a fresh profile; fails (never skips) when absent."""
    chrome = Path(os.environ.get(CHROME_ENV, CHROME_DEFAULT))
    driver = Path(os.environ.get(DRIVER_ENV, DRIVER_DEFAULT))
    missing = [f"{path} (set {env} to elsewhere)" for path, env in ((chrome, CHROME_ENV), (driver, DRIVER_ENV))
               if not (path.is_file() and os.access(path, os.X_OK))]
    if missing:
        pytest.fail("the browser test needs Chromium and its driver; missing: " + ", ".join(missing)
                    + ". On Debian: sudo apt-get install chromium chromium-driver (`bash .ci/run` does it).",
                    pytrace=False)
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
    """Whether a failure names an allowed external resource, or the icon Chromium asks every site for."""
    return any(prefix in text for prefix in EXTERNAL_ALLOWED) or urllib.parse.urljoin(page, "/favicon.ico") in text


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


def _screenshot(session: webdriver.Chrome, path: Path) -> None:
    """A PNG of the whole page, beyond the window's height (DevTools ``Page.captureScreenshot``)."""
    size = session.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = session.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                              "captureBeyondViewport": True,
                                                              "optimizeForSpeed": True})
    path.write_bytes(base64.b64decode(shot["data"]))


def open_page(session: webdriver.Chrome, url: str, screenshot: Path) -> tuple[list[str], list[str]]:
    """Load ``url``, save its screenshot; returns (problems found on the page, every link it holds)."""
    session.get_log("browser"), session.get_log("performance")  # forget the previous page's entries
    session.get(url)
    broken = session.execute_async_script(BROKEN_IMAGES_JS)
    links = session.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href);")
    _screenshot(session, screenshot)
    problems = [f"image does not load: {src}" for src in broken]
    problems += [f"console {e['level']}: {e['message']}" for e in session.get_log("browser")
                 if e["level"] == "SEVERE" and not _tolerated(e["message"], url)]
    problems += [f"request failed: {failure}" for failure in _failed_requests(session.get_log("performance"))
                 if not _tolerated(failure, url)]
    return problems, links


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
<link rel="stylesheet" href="missing.css"></head><body>
<img src="fine.png" alt="decodes"><img src="missing.png" alt="404">
<a href="other.html#there">good</a> <a href="other.html#nowhere">bad anchor</a> <a href="gone.html">404</a>
<a href="https://example.org/">outside the book, not followed</a>
<script>undefinedFunction();</script></body></html>"""
CLEAN_SITE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>clean</title></head><body>
<h1 id="there">There</h1><img src="fine.png" alt="decodes"><a href="index.html">back</a>
<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script></body></html>"""


def test_checks_find_each_planted_fault(browser, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(BROKEN_SITE)
    (site / "other.html").write_text(CLEAN_SITE)
    matplotlib.image.imsave(site / "fine.png", np.zeros((4, 4, 3)))
    with serve(site) as base:
        problems, links = open_page(browser, base + "index.html", tmp_path / "index.png")
        problems += broken_links(links, base)
        clean, clean_links = open_page(browser, base + "other.html", tmp_path / "other.png")
        clean += broken_links(clean_links, base)
    assert clean == []
    expected = [f"image does not load: {base}missing.png", f"link {base}gone.html: HTTP 404",
                f"link {base}other.html#nowhere: no anchor #nowhere on the target page",
                f"request failed: {base}missing.css: HTTP 404", f"request failed: {base}missing.png: HTTP 404"]
    assert all(p in problems for p in expected), problems
    assert any("Uncaught ReferenceError: undefinedFunction is not defined" in p for p in problems), problems
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
    problems, links = open_page(browser, f"{smoke_site}{page}.html", screenshot)
    problems += broken_links(links, smoke_site)
    assert problems == [], "\n".join(problems)
    assert screenshot.stat().st_size > 0
