"""The operator's search page (sen_infer/serve/static) in a real browser against the real server.

Playwright drives Debian's Chromium (`apt-get install chromium`); Playwright's own browser download is
not used. Without the playwright package or a chromium binary these tests skip. The server runs with its
own Content-Security-Policy, so the page is tested as operators get it (which is also why every wait here
polls with `page.evaluate` rather than `wait_for_function`: the latter evaluates a string in the page,
which that policy forbids). Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed (pip install playwright)")

from helpers import run_cli  # noqa: E402
from serving import ROOT, call, served  # noqa: E402


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium); "
                             "Playwright's own browser download is not used")

ARTIFACTS = ROOT / "tests" / "artifacts"
START = 1_700_000_000.0  # the cameras' clock: Unix seconds
QUERY = "a woman in a red coat carrying a black backpack"
K = 20
WAIT_S = 60  # every wait is bounded by this (each step takes under 1 s idle); none asserts how fast anything is


# ---- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(engine, video, tmp_path_factory):
    """A gallery of the two synthetic cameras, ingested with the SDK at Unix times."""
    from sen_infer import Retriever

    root = tmp_path_factory.mktemp("serve_browser")
    gallery = root / "gallery"
    r = Retriever(engine, gallery=gallery)
    r.gallery.add_videos([video / "cam1.mp4", video / "cam2.mp4"], start_time=START)
    assert len(r.gallery) > 0
    r.gallery.close()
    return {"engine": engine, "gallery": gallery, "root": root}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Page:
    """A page with its page errors (which fail the test) and console errors (which are logged)."""

    def __init__(self, browser, width=1280, height=800):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_S * 1000)
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)

    def js(self, expression: str):
        return self.page.evaluate(expression)

    def until(self, expression: str, what: str | None = None):
        """Polls a JS expression until it is truthy (returned); AssertionError after WAIT_S seconds."""
        end = time.monotonic() + WAIT_S
        while True:
            got = self.page.evaluate(expression)
            if got:
                return got
            if time.monotonic() > end:
                raise AssertionError(f"not within {WAIT_S} s: {what or expression}\n"
                                     f"status: {self.status()!r}, error: {self.error()!r}")
            time.sleep(0.1)

    def status(self) -> str:
        return self.page.evaluate("document.getElementById('status').textContent")

    def error(self) -> str | None:
        return self.page.evaluate("(e => e.hidden ? null : e.textContent)(document.getElementById('error'))")

    def settled_status(self, pattern: str) -> str:
        """Waits until a search has rendered (status matches `pattern`, the grid is not busy)."""
        rx = re.compile(pattern)
        end = time.monotonic() + WAIT_S
        while True:
            busy = self.page.evaluate("document.getElementById('results').hasAttribute('aria-busy')")
            text = self.status()
            if not busy and rx.search(text):
                return text
            if time.monotonic() > end:
                raise AssertionError(f"no status matching {pattern!r} within {WAIT_S} s; status {text!r}, "
                                     f"error {self.error()!r}")
            time.sleep(0.1)

    def card_keys(self) -> list[int]:
        return self.page.evaluate("[...document.querySelectorAll('.hit-card')].map(c => Number(c.dataset.key))")

    def images_loaded(self, selector: str, n: int | None = None):
        take = "" if n is None else f".slice(0, {n})"
        self.until(f"(imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0))"
                   f"([...document.querySelectorAll({selector!r})]{take})", f"images {selector} loaded")

    def dialog_open(self) -> bool:
        return self.page.evaluate("document.getElementById('frame-view').open")

    def close(self):
        for line in self.console:
            print("browser console:", line)
        self.context.close()
        assert not self.errors, f"page errors: {self.errors}"


def api_keys(base: str, path: str, body: dict, key: str | None = None) -> list[int]:
    status, _, got = call(base, path, body, key=key)
    assert status == 200, got
    return [h["key"] for h in got["hits"]]


# ---- tests ---------------------------------------------------------------------------------------------
def test_search_page(site, browser, artifacts):
    with served(site["engine"], gallery=site["gallery"]) as base:
        expected = api_keys(base, "/api/v1/query", {"text": QUERY, "k": K})
        assert expected, "the gallery answers no hits at all"
        info = call(base, "/api/v1/info")[2]
        assert info["auth"] is False and info["time_span"][0] > 1e9
        cameras = info["cameras"]  # the videos' file names (add_videos names no camera)
        assert len(cameras) == 2

        p = Page(browser)
        page = p.page
        try:
            page.goto(base + "/")
            p.until("document.querySelectorAll('#camera-list input[type=checkbox]').length === 2", "cameras listed")
            assert all(c in page.inner_text("#camera-list") for c in cameras)
            assert page.is_hidden("#auth")  # loopback without keys: no key field
            assert page.get_attribute("#since", "type") == "datetime-local"  # Unix times: dates, in UTC
            assert info["model"] in page.inner_text("#info")

            # a text search: the form submits with Enter
            page.fill("#q", QUERY)
            page.press("#q", "Enter")
            status = p.settled_status(r"^\d+ hits? in [\d.]+ ms")
            keys = p.card_keys()
            assert len(keys) == len(expected) and set(keys) == set(expected)
            assert status.startswith(f"{len(expected)} hit")
            p.images_loaded(".hit-card img", n=4)
            assert page.inner_text(".hit-card >> nth=0 >> .camera-name") in cameras
            assert re.search(r"\b20\d\d-\d\d-\d\d\b", page.inner_text(".hit-card >> nth=0 >> .time"))
            assert re.fullmatch(r"-?\d\.\d{3}", page.inner_text(".hit-card >> nth=0 >> .score"))
            url = urllib.parse.urlsplit(page.url)
            assert urllib.parse.parse_qs(url.query) == {"q": [QUERY], "k": [str(K)]}
            page.screenshot(path=str(artifacts / "serve_results.png"))

            # the frame view: the full frame loads through fetch() and a blob: URL
            first = keys[0]
            page.click(f".hit-card[data-key='{first}']")
            p.until("document.getElementById('frame-view').open", "frame view opens")
            p.until("(i => i.complete && i.naturalWidth > 0)(document.getElementById('frame-img'))",
                    "the frame image loads")
            assert page.get_attribute("#frame-img", "src").startswith("blob:")
            assert page.is_hidden("#frame-error")
            p.images_loaded("#track-strip .strip-item img")
            assert page.get_attribute("#frame-view", "data-key") == str(first)
            assert page.get_attribute("#track-strip .strip-item.current", "data-key") == str(first)  # its own track
            details = page.inner_text("#frame-details")
            assert str(first) in details and any(c in details for c in cameras)
            page.screenshot(path=str(artifacts / "serve_frame.png"))

            # a neighbouring crop opens that row's frame view
            nearby = page.query_selector_all("#nearby-strip .strip-item")
            if nearby:
                other = nearby[0].get_attribute("data-key")
                nearby[0].click()
                p.until(f"document.getElementById('frame-view').dataset.key === '{other}'", "a neighbour's frame view")
                assert other in page.inner_text("#frame-details")
                p.until("(i => i.complete && i.naturalWidth > 0)(document.getElementById('frame-img'))",
                        "the neighbour's frame loads")

            # "Find similar" from the frame view shows the server's similar hits in the grid
            shown = int(page.evaluate("document.getElementById('frame-view').dataset.key"))
            page.click("#frame-similar")
            assert not p.dialog_open()
            status = p.settled_status(rf"^Similar to row {shown}: \d+ hits? in")
            similar = api_keys(base, "/api/v1/query/image", {"key": shown, "k": K})
            assert set(p.card_keys()) == set(similar) and len(p.card_keys()) == len(similar) > 0
            assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query) == {
                "similar": [str(shown)], "k": [str(K)]}

            # back: the text search again (from the URL, without a new history entry)
            page.go_back()
            p.settled_status(r"^\d+ hits? in [\d.]+ ms")
            assert set(p.card_keys()) == set(expected)

            # the small "Similar" button on a card
            page.click(f".hit-card[data-key='{first}'] + button.similar")
            p.settled_status(rf"^Similar to row {first}: ")
            assert set(p.card_keys()) == set(api_keys(base, "/api/v1/query/image", {"key": first, "k": K}))

            # a shared URL runs its search on load
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K}))
            p.settled_status(r"^\d+ hits? in [\d.]+ ms")
            assert set(p.card_keys()) == set(expected) and len(p.card_keys()) == len(expected)
            assert page.input_value("#q") == QUERY

            # keyboard: a card takes focus, Enter opens the frame view, Escape closes it and focus returns
            page.focus(".hit-card >> nth=0")
            focused = page.evaluate("document.activeElement.dataset.key")
            page.keyboard.press("Enter")
            p.until("document.getElementById('frame-view').open", "Enter opens the frame view")
            page.keyboard.press("Escape")
            p.until("!document.getElementById('frame-view').open", "Escape closes the frame view")
            # focus comes back in the dialog's close handler, which may run after `open` is cleared
            p.until(f"document.activeElement.dataset.key === {json.dumps(focused)}", "focus returns to the card")
            # Tab from the search button reaches the cards (through the filters, in document order)
            page.focus("#q")
            for _ in range(60):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.classList.contains('hit-card')"):
                    break
            else:
                raise AssertionError("Tab never reached a result card")

            # no hits: the empty state; a bad request: the server's one-line error, visible
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K, "since": 1, "until": 2}))
            p.settled_status(r"^0 hits in")
            assert page.is_visible("#results .empty") and not p.card_keys()
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": 500}))
            p.until("!document.getElementById('error').hidden", "the error line")
            message = p.error()
            assert "200" in message and "\n" not in message
            assert page.get_attribute("#error", "role") == "alert"

            # a camera filter from the URL ticks its box and filters the hits
            one, other = cameras[1], cameras[0]
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K, "camera": one}))
            p.settled_status(r"^\d+ hits? in")
            assert page.is_checked(f'#camera-list input[value="{one}"]')
            assert not page.is_checked(f'#camera-list input[value="{other}"]')
            shown_cams = page.evaluate("[...document.querySelectorAll('.hit-card .camera-name')].map(e => e.textContent)")
            assert shown_cams and set(shown_cams) == {one}
            assert set(p.card_keys()) == set(api_keys(base, "/api/v1/query", {"text": QUERY, "k": K, "camera": [one]}))

            # a narrow phone screen: no sideways scrolling, the grid still shows cards
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K}))
            p.settled_status(r"^\d+ hits? in")
            page.set_viewport_size({"width": 390, "height": 844})
            p.images_loaded(".hit-card img", n=2)
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 390 + 1
            columns = page.evaluate("getComputedStyle(document.querySelector('#results .grid'))"
                                    ".gridTemplateColumns.split(' ').length")
            assert 1 <= columns <= 2
            page.screenshot(path=str(artifacts / "serve_narrow.png"))
            page.click(".hit-card >> nth=0")
            p.until("(i => i.complete && i.naturalWidth > 0)(document.getElementById('frame-img'))",
                    "the frame loads on a narrow screen")
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 390 + 1
            assert page.evaluate("(d => d.scrollWidth <= d.clientWidth + 1)(document.getElementById('frame-view'))")
        finally:
            p.close()


def test_crop_quality_is_shown_and_a_link_s_minimum_is_kept(site, browser, artifacts):
    """Each card says its crop quality; a link with min_quality (even one the menu lacks) searches with it
    and shows it selected, and the page's hits are the API's for that minimum."""
    with served(site["engine"], gallery=site["gallery"]) as base:
        every = call(base, "/api/v1/query", {"text": QUERY, "k": K})[2]["hits"]
        known = sorted(h["quality"] for h in every if h["quality"] is not None)
        assert len(set(known)) > 1, known  # the site's video rows carry scores, and they differ
        cut = known[len(known) // 2]
        expected = api_keys(base, "/api/v1/query", {"text": QUERY, "k": K, "min_quality": cut})
        assert 0 < len(expected) < len(every)
        p = Page(browser)
        try:
            p.page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K, "min_quality": cut}))
            p.settled_status(r"^\d+ hits? in [\d.]+ ms")
            assert set(p.card_keys()) == set(expected)
            assert float(p.js("document.getElementById('min-quality').value")) == cut  # JS writes 1.0 as "1"
            shown = p.js("[...document.querySelectorAll('.hit-card .quality')].map(e => e.textContent)")
            assert shown and all(float(t.split()[-1]) >= cut - 0.005 for t in shown)  # printed to 2 places
            p.page.screenshot(path=str(artifacts / "serve_min_quality.png"))
        finally:
            p.close()


def test_search_page_with_access_keys(site, browser, artifacts):
    keyfile = site["root"] / "keys.json"
    out = run_cli("keys", "add", "op", "--role", "viewer", "--file", keyfile, timeout=120)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1].strip()
    assert key

    with served(site["engine"], gallery=site["gallery"], keys=keyfile) as base:
        assert call(base, "/api/v1/info")[0] == 401
        expected = api_keys(base, "/api/v1/query", {"text": QUERY, "k": K}, key=key)

        p = Page(browser)
        page = p.page
        try:
            page.goto(base + "/")
            p.until("!document.getElementById('auth').hidden && !document.getElementById('auth-form').hidden",
                    "the page asks for a key")
            assert page.is_visible("#api-key")

            # a wrong key is refused, and said so
            page.fill("#api-key", "not-a-key")
            page.press("#api-key", "Enter")
            p.until("/not accepted/.test(document.getElementById('auth-note').textContent)", "a wrong key is refused")
            assert not page.query_selector_all(".hit-card")

            # the right one: the cameras load, searching works, images load through authorised fetches
            page.fill("#api-key", key)
            page.press("#api-key", "Enter")
            p.until("document.querySelectorAll('#camera-list input[type=checkbox]').length === 2", "cameras listed")
            assert page.is_hidden("#auth-form")
            page.fill("#q", QUERY)
            page.click("#search button[type=submit]")
            p.settled_status(r"^\d+ hits? in")
            assert set(p.card_keys()) == set(expected) and len(p.card_keys()) == len(expected)
            p.images_loaded(".hit-card img", n=4)
            page.click(".hit-card >> nth=0")
            p.until("(i => i.complete && i.naturalWidth > 0)(document.getElementById('frame-img'))",
                    "the frame loads with the key")
            page.keyboard.press("Escape")

            # the key lives in this tab's session storage, never in the URL
            assert key not in page.url
            assert page.evaluate("Object.values(sessionStorage)").count(key) == 1
            assert page.evaluate("Object.values(localStorage)") == []
            assert key not in page.evaluate("document.cookie")

            # a reload keeps the key for the tab and runs the search from the URL
            page.reload()
            p.settled_status(r"^\d+ hits? in")
            assert set(p.card_keys()) == set(expected)
            page.screenshot(path=str(artifacts / "serve_keys.png"))
        finally:
            p.close()


def test_api_docs_render_offline(site, browser, artifacts):
    """/docs renders the API's operations from files the service serves itself (no CDN: the browser
    here reaches nothing else). swagger-ui 4 showed "Unable to render this definition" for the
    OpenAPI 3.1 that FastAPI writes; this catches that."""
    with served(site["engine"], gallery=site["gallery"]) as base:
        page = Page(browser)
        outside: list[str] = []
        page.page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((base, "data:", "blob:"))
                     else None)
        page.page.goto(base + "/docs")
        page.until("document.querySelectorAll('.opblock').length >= 9", "the docs list the operations")
        text = page.js("document.body.innerText")
        assert "Unable to render" not in text and "/api/v1/query/image" in text
        page.page.screenshot(path=str(artifacts / "serve_docs.png"))
        assert outside == []
        page.close()
