"""The operator's search page (sen_infer/serve/static) in a real browser against the real server.

Playwright drives Debian's Chromium (`apt-get install chromium`); Playwright's own browser download is
not used. Without the playwright package or a chromium binary these tests skip. The server runs with its
own Content-Security-Policy, so the page is tested as operators get it (which is also why every wait here
polls with `page.evaluate` rather than `wait_for_function`: the latter evaluates a string in the page,
which that policy forbids). Screenshots go to tests/artifacts/, at 1280x800 and at a phone's 390x844.
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
START = 1_700_000_000.0  # the cameras' clock: Unix seconds (2023-11-14 22:13:20 UTC)
RLO_CAMERA = "\u202egnp.rood"  # holds a right-to-left override: unisolated, it reorders the text after it
MANY = 130  # cameras of one picture each, beside the video's camera and RLO_CAMERA
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
def mixed(engine, video, synth_learn, tmp_path_factory):
    """Seconds from the video's start (no start time), and pictures: 3 under RLO_CAMERA, 1 under each of MANY."""
    from sen_infer import Retriever

    root = tmp_path_factory.mktemp("serve_browser_mixed")
    gallery = root / "gallery"
    pictures = sorted((synth_learn / "imgs").rglob("*.jpg"))[:3 + MANY]
    r = Retriever(engine, gallery=gallery)
    r.gallery.add_video(video / "cam1.mp4")
    assert r.gallery.add_images(pictures[:3], camera=RLO_CAMERA).crops_embedded == 3
    for i, picture in enumerate(pictures[3:]):
        r.gallery.add_images([picture], camera=f"gate-{i:03d}")
    r.gallery.close()
    return {"engine": engine, "gallery": gallery, "pictures": [p.name for p in pictures[:3]]}


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

    def __init__(self, browser, width=1280, height=800, timezone=None):
        self.context = browser.new_context(viewport={"width": width, "height": height}, timezone_id=timezone)
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

    def visible_chips(self) -> list[str]:
        """The camera chips shown (not hidden), by camera name."""
        return self.js("[...document.querySelectorAll('#camera-list label.camera')]"
                       ".filter(l => l.getClientRects().length).map(l => l.querySelector('input').value)")

    def frame_loaded(self, what: str):
        self.until("(i => i.complete && i.naturalWidth > 0)(document.getElementById('frame-img'))", what)

    def query(self) -> dict:
        """The page's URL query, parsed."""
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.page.url).query)

    def scrolls_sideways(self) -> bool:
        return self.js("document.scrollingElement.scrollWidth > window.innerWidth + 1")

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
def _text_search(p: Page, base: str, expected: list[int], cameras: list[str], artifacts: Path) -> list[int]:
    """A text search from the form (Enter submits): the API's hits, each score explained."""
    page = p.page
    page.fill("#q", QUERY)
    page.press("#q", "Enter")
    status = p.settled_status(r"^\d+ hits? in [\d.]+ ms")
    keys = p.card_keys()
    assert len(keys) == len(expected) and set(keys) == set(expected) and status.startswith(f"{len(expected)} hit")
    p.images_loaded(".hit-card img", n=4)
    assert page.inner_text(".hit-card >> nth=0 >> .camera-name") in cameras
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", page.inner_text(".hit-card >> nth=0 >> .time"))
    assert re.fullmatch(r"-?\d\.\d{3}", page.inner_text(".hit-card >> nth=0 >> .score"))
    # what a score means: a legend over the grid and a tooltip on each score
    legend = page.inner_text("#score-legend")
    assert page.is_visible("#score-legend") and "cosine similarity of the description" in legend
    assert "within one search" in legend and "\u22121" in legend
    assert "within one search" in page.get_attribute(".hit-card >> nth=0 >> .score", "title")
    assert p.query() == {"q": [QUERY], "k": [str(K)]} and page.is_hidden("#reference")
    page.screenshot(path=str(artifacts / "serve_results.png"))
    return keys


def _frame_view(p: Page, first: int, cameras: list[str], artifacts: Path, name: str):
    """The frame view of row `first`: the full frame loads through fetch() and a blob: URL."""
    page = p.page
    page.click(f".hit-card[data-key='{first}']")
    p.until("document.getElementById('frame-view').open", "frame view opens")
    p.frame_loaded("the frame image loads")
    assert page.get_attribute("#frame-img", "src").startswith("blob:") and page.is_hidden("#frame-error")
    p.images_loaded("#track-strip .strip-item img")
    assert page.get_attribute("#frame-view", "data-key") == str(first)
    assert page.get_attribute("#track-strip .strip-item.current", "data-key") == str(first)  # its own track
    details = page.inner_text("#frame-details")
    assert str(first) in details and any(c in details for c in cameras)
    assert "Frame" in details and "Track" in details  # a video row's fields (a picture has none of them)
    page.screenshot(path=str(artifacts / name))


def _reference_shows(p: Page, key: int):
    """A "find similar" search shows its reference crop; the old description never looks like its query."""
    page = p.page
    assert page.input_value("#q") == ""
    assert page.is_visible("#reference") and page.get_attribute("#reference", "data-key") == str(key)
    p.images_loaded("#reference-img")  # fetched with the key, as a blob: URL
    assert page.get_attribute("#reference-img", "src").startswith("blob:")
    p.until(f"/row {key}/.test(document.getElementById('reference-label').textContent)", "the reference's label")
    assert "reference crop" in page.inner_text("#score-legend")


def _find_similar(p: Page, base: str, expected: list[int], first: int, artifacts: Path):
    page = p.page
    # a neighbouring crop opens that row's frame view
    nearby = page.query_selector_all("#nearby-strip .strip-item")
    if nearby:
        other = nearby[0].get_attribute("data-key")
        nearby[0].click()
        p.until(f"document.getElementById('frame-view').dataset.key === '{other}'", "a neighbour's frame view")
        assert other in page.inner_text("#frame-details")
        p.frame_loaded("the neighbour's frame loads")
    # "Find similar" from the frame view shows the server's similar hits, under the reference crop
    shown = int(page.evaluate("document.getElementById('frame-view').dataset.key"))
    page.click("#frame-similar")
    assert not p.js("document.getElementById('frame-view').open")
    p.settled_status(rf"^Similar to row {shown}: \d+ hits? in")
    similar = api_keys(base, "/api/v1/query/image", {"key": shown, "k": K})
    assert set(p.card_keys()) == set(similar) and len(p.card_keys()) == len(similar) > 0
    assert p.query() == {"similar": [str(shown)], "k": [str(K)]}
    _reference_shows(p, shown)
    page.screenshot(path=str(artifacts / "serve_similar.png"))
    # back: the text search again (from the URL, without a new history entry), its text back in the box
    page.go_back()
    p.settled_status(r"^\d+ hits? in [\d.]+ ms")
    assert set(p.card_keys()) == set(expected)
    assert page.input_value("#q") == QUERY and page.is_hidden("#reference")
    # the small "Similar" button on a card; the reference's x returns to the text search
    page.click(f".hit-card[data-key='{first}'] + button.similar")
    p.settled_status(rf"^Similar to row {first}: ")
    assert set(p.card_keys()) == set(api_keys(base, "/api/v1/query/image", {"key": first, "k": K}))
    _reference_shows(p, first)
    page.click("#reference-clear")
    p.settled_status(r"^\d+ hits? in [\d.]+ ms")
    assert page.is_hidden("#reference") and page.input_value("#q") == QUERY
    assert set(p.card_keys()) == set(expected) and p.query() == {"q": [QUERY], "k": [str(K)]}
    # a shared "similar" link shows its reference too
    page.goto(base + "/?" + urllib.parse.urlencode({"similar": first, "k": K}))
    p.settled_status(rf"^Similar to row {first}: ")
    _reference_shows(p, first)


def _keyboard(p: Page):
    """Enter on a card opens the frame view, Escape closes it, focus returns; Tab reaches the cards."""
    page = p.page
    page.focus(".hit-card >> nth=0")
    focused = page.evaluate("document.activeElement.dataset.key")
    page.keyboard.press("Enter")
    p.until("document.getElementById('frame-view').open", "Enter opens the frame view")
    page.keyboard.press("Escape")
    p.until("!document.getElementById('frame-view').open", "Escape closes the frame view")
    # focus comes back in the dialog's close handler, which may run after `open` is cleared
    p.until(f"document.activeElement.dataset.key === {json.dumps(focused)}", "focus returns to the card")
    page.focus("#q")
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('hit-card')"):
            break
    else:
        raise AssertionError("Tab never reached a result card")


def _empty_and_errors(p: Page, base: str):
    """No hits: the empty state; a bad request: the server's one-line error, visible."""
    page = p.page
    page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K, "since": 1, "until": 2}))
    p.settled_status(r"^0 hits in")
    assert page.is_visible("#results .empty") and not p.card_keys() and page.is_hidden("#score-legend")
    page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": 500}))
    p.until("!document.getElementById('error').hidden", "the error line")
    message = p.error()
    assert "200" in message and "\n" not in message and page.get_attribute("#error", "role") == "alert"


def _narrow(p: Page, base: str, cameras: list[str], artifacts: Path):
    """A phone screen: no sideways scrolling, every camera chip in view, one or two columns, dialogs fit."""
    page = p.page
    page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K}))
    p.settled_status(r"^\d+ hits? in")
    page.set_viewport_size({"width": 390, "height": 844})
    p.images_loaded(".hit-card img", n=2)
    assert not p.scrolls_sideways()
    assert sorted(p.visible_chips()) == sorted(cameras)  # every chip in view, not in a scroll box
    assert p.js("(l => l.scrollHeight <= l.clientHeight + 1)(document.getElementById('camera-list'))")
    columns = page.evaluate("getComputedStyle(document.querySelector('#results .grid'))"
                            ".gridTemplateColumns.split(' ').length")
    assert 1 <= columns <= 2
    page.screenshot(path=str(artifacts / "serve_narrow.png"))
    page.click(".hit-card >> nth=0")
    p.frame_loaded("the frame loads on a narrow screen")
    assert not p.scrolls_sideways()
    assert page.evaluate("(d => d.scrollWidth <= d.clientWidth + 1)(document.getElementById('frame-view'))")
    p.images_loaded("#track-strip .strip-item img")
    page.screenshot(path=str(artifacts / "serve_narrow_frame.png"))
    page.click("#frame-similar")
    p.settled_status(r"^Similar to row \d+: \d+ hits? in")
    p.images_loaded(".hit-card img", n=2)
    _reference_shows(p, int(page.get_attribute("#reference", "data-key")))
    assert not p.scrolls_sideways()
    page.screenshot(path=str(artifacts / "serve_narrow_similar.png"))


def test_search_page(site, browser, artifacts):
    with served(site["engine"], gallery=site["gallery"]) as base:
        expected = api_keys(base, "/api/v1/query", {"text": QUERY, "k": K})
        assert expected, "the gallery answers no hits at all"
        info = call(base, "/api/v1/info")[2]
        assert info["auth"] is False and info["time_span"][0] > 1e9 and len(info["cameras"]) == 2
        cameras = info["cameras"]  # the videos' file names (add_videos names no camera)

        p = Page(browser)
        page = p.page
        try:
            page.goto(base + "/")
            p.until("document.querySelectorAll('#camera-list input[type=checkbox]').length === 2", "cameras listed")
            assert all(c in page.inner_text("#camera-list") for c in cameras)
            assert sorted(p.visible_chips()) == sorted(cameras) and page.is_hidden("#camera-filter")
            assert page.is_hidden("#auth")  # loopback without keys: no key field
            assert page.get_attribute("#since", "type") == "datetime-local"  # Unix times: dates
            assert info["model"] in page.inner_text("#info")

            keys = _text_search(p, base, expected, cameras, artifacts)
            _frame_view(p, keys[0], cameras, artifacts, "serve_frame.png")
            _find_similar(p, base, expected, keys[0], artifacts)

            # a shared URL runs its search on load
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K}))
            p.settled_status(r"^\d+ hits? in [\d.]+ ms")
            assert set(p.card_keys()) == set(expected) and len(p.card_keys()) == len(expected)
            assert page.input_value("#q") == QUERY and page.is_hidden("#reference")

            _keyboard(p)
            _empty_and_errors(p, base)

            # a camera filter from the URL ticks its box and filters the hits
            one, other = cameras[1], cameras[0]
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K, "camera": one}))
            p.settled_status(r"^\d+ hits? in")
            assert page.is_checked(f'#camera-list input[value="{one}"]')
            assert not page.is_checked(f'#camera-list input[value="{other}"]')
            shown_cams = page.evaluate("[...document.querySelectorAll('.hit-card .camera-name')].map(e => e.textContent)")
            assert shown_cams and set(shown_cams) == {one}
            assert set(p.card_keys()) == set(api_keys(base, "/api/v1/query", {"text": QUERY, "k": K, "camera": [one]}))

            _narrow(p, base, cameras, artifacts)
        finally:
            p.close()


def test_times_read_in_the_browser_s_time_zone(site, browser, artifacts):
    """A wall-clock gallery's time filters are date-and-time inputs in the browser's own zone, with the UTC
    equivalent beside them; the API still gets Unix seconds, and the hits are the API's for them."""
    with served(site["engine"], gallery=site["gallery"]) as base:
        p = Page(browser, timezone="America/New_York")  # UTC-5 in November
        page = p.page
        try:
            since = START + 2  # 2023-11-14 22:13:22 UTC is 17:13:22 in New York
            page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K, "since": since}))
            p.settled_status(r"^\d+ hits? in")
            assert page.get_attribute("#since", "type") == "datetime-local"
            assert "local" in page.inner_text("#since-label")
            assert page.input_value("#since") == "2023-11-14T17:13:22"
            assert page.inner_text("#since-utc") == "= 2023-11-14 22:13:22 UTC"
            assert "UTC\u22125" in page.inner_text("#time-hint")
            assert set(p.card_keys()) == set(api_keys(base, "/api/v1/query", {"text": QUERY, "k": K, "since": since}))
            shown = page.inner_text(".hit-card >> nth=0 >> .time")
            assert re.search(r"2023-11-14 17:1\d:\d\d(\.\d)? UTC\u22125", shown), shown

            # a local time typed in searches from that instant, sent as Unix seconds
            page.fill("#since", "2023-11-14T17:13:25")
            assert page.inner_text("#since-utc") == "= 2023-11-14 22:13:25 UTC"
            page.press("#q", "Enter")
            p.until(f"location.search.includes('since={int(START + 5)}')", "the typed time in the URL")
            p.settled_status(r"^\d+ hits? in")
            expected = api_keys(base, "/api/v1/query", {"text": QUERY, "k": K, "since": START + 5})
            assert set(p.card_keys()) == set(expected)
            page.screenshot(path=str(artifacts / "serve_time_zone.png"))
        finally:
            p.close()


def test_pictures_many_cameras_and_video_seconds(mixed, browser, artifacts):
    """Pictures read as pictures (no frame, track or time); a camera name with a right-to-left override
    stays in its place; MANY cameras fit a phone; a gallery timed from each video's start says so."""
    with served(mixed["engine"], gallery=mixed["gallery"]) as base:
        info = call(base, "/api/v1/info")[2]
        assert info["time_span"][1] < 1e9 and len(info["cameras"]) == MANY + 2
        for width, height in ((1280, 800), (390, 844)):
            p = Page(browser, width, height)
            try:
                p.page.goto(base + "/")
                p.until(f"document.querySelectorAll('#camera-list input').length === {MANY + 2}", "cameras listed")
                if width == 390:
                    _many_cameras_on_a_phone(p, artifacts)
                    continue
                # seconds into the video, said so
                assert p.page.get_attribute("#since", "type") == "number"
                assert "seconds into the video" in p.page.inner_text("#since-label")
                assert "s into the videos" in p.page.inner_text("#info")
                _rlo_camera_is_isolated(p)
                _picture_rows(p, base, mixed["pictures"], artifacts)
            finally:
                p.close()


def _rlo_camera_is_isolated(p: Page):
    chip = f'#camera-list label.camera:has(input[value="{RLO_CAMERA}"])'
    p.page.fill("#camera-filter", "gnp")  # its name sorts after the first dozen
    assert p.visible_chips() == [RLO_CAMERA]
    assert p.js(f"document.querySelector({chip!r} + ' bdi').textContent") == RLO_CAMERA
    # isolated, the row count stays after the name; an override left loose would draw it before
    right = p.js(f"document.querySelector({chip!r} + ' bdi').getBoundingClientRect().right")
    assert p.js(f"document.querySelector({chip!r} + ' .count').getBoundingClientRect().left") >= right - 1


def _picture_rows(p: Page, base: str, pictures: list[str], artifacts: Path):
    """Pictures read "Picture" and their file name (no frame, track or time): cards, dialog, strip, reference."""
    page = p.page
    page.goto(base + "/?" + urllib.parse.urlencode({"q": QUERY, "k": K, "camera": RLO_CAMERA}))
    p.settled_status(r"^3 hits in")
    p.images_loaded(".hit-card img")
    for text in p.js("[...document.querySelectorAll('.hit-card')].map(c => c.innerText)"):
        assert "Picture" in text and any(name in text for name in pictures), text
        assert not re.search(r"frame|track|no time|-1", text, re.I), text
    assert p.js("[...document.querySelectorAll('.hit-card .camera-name bdi')].every(b => b.textContent === "
                f"{json.dumps(RLO_CAMERA)})")
    page.screenshot(path=str(artifacts / "serve_pictures.png"))
    page.click(".hit-card >> nth=0")
    p.frame_loaded("the picture loads")
    assert page.inner_text("#frame-title").startswith("Picture ")
    assert p.js("document.querySelector('#frame-title bdi.camera-name').textContent") == RLO_CAMERA
    labels = p.js("[...document.querySelectorAll('#frame-details dt')].map(d => d.textContent)")
    assert "File" in labels and not {"Frame", "Track", "Time", "Box"} & set(labels), labels
    assert page.is_hidden("#track-wrap") and p.js("document.querySelector('#frame-title bdi.source-name')")
    p.images_loaded("#nearby-strip .strip-item img")
    caps = p.js("[...document.querySelectorAll('#nearby-strip .strip-item .cap')].map(c => c.textContent)")
    assert "picture" in caps, caps  # the camera's other pictures
    page.screenshot(path=str(artifacts / "serve_picture_frame.png"))
    key = int(page.get_attribute("#frame-view", "data-key"))  # find similar by a picture
    page.click("#frame-similar")
    p.settled_status(rf"^Similar to row {key}: ")
    _reference_shows(p, key)
    label = page.inner_text("#reference-label")
    assert "picture" in label and any(name in label for name in pictures)
    assert p.js("document.querySelector('#reference-label bdi.camera-name').textContent") == RLO_CAMERA


def _many_cameras_on_a_phone(p: Page, artifacts: Path):
    """A dozen chips in view, "Show all", a filter by name; a ticked camera stays shown, and searches."""
    page = p.page
    total = MANY + 2
    assert len(p.visible_chips()) == 12
    assert p.js("(l => l.scrollHeight <= l.clientHeight + 1)(document.getElementById('camera-list'))")
    assert not p.scrolls_sideways() and page.inner_text("#camera-more") == f"Show all {total} cameras"
    page.click("#camera-more")
    assert len(p.visible_chips()) == total
    assert p.js("document.getElementById('camera-list').clientHeight") <= 844 / 2 + 1  # it scrolls, bounded
    page.screenshot(path=str(artifacts / "serve_narrow_cameras.png"))
    page.click("#camera-more")  # "Show fewer"
    assert len(p.visible_chips()) == 12
    page.fill("#camera-filter", "gate-01")
    assert sorted(p.visible_chips()) == [f"gate-{i:03d}" for i in range(10, 20)]
    page.check('#camera-list input[value="gate-015"]')
    page.fill("#camera-filter", "")
    assert "gate-015" in p.visible_chips() and len(p.visible_chips()) == 13  # the first dozen and the ticked one
    assert "1 of" in page.inner_text("#camera-summary")
    page.fill("#q", QUERY)
    page.press("#q", "Enter")
    p.settled_status(r"^1 hit in")
    assert p.query()["camera"] == ["gate-015"] and not p.scrolls_sideways()
    assert not re.search(r"frame|track", page.inner_text(".hit-card"), re.I)
    page.locator(".hit-card").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "serve_narrow_pictures.png"))


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
            assert page.is_hidden("#forget-key") and page.is_visible("#auth-form")  # dropped: nothing to forget
            assert page.evaluate("Object.values(sessionStorage)") == []
            page.screenshot(path=str(artifacts / "serve_key_refused.png"))

            # the right one: the cameras load, searching works, images load through authorised fetches
            page.fill("#api-key", key)
            page.press("#api-key", "Enter")
            p.until("document.querySelectorAll('#camera-list input[type=checkbox]').length === 2", "cameras listed")
            assert page.is_hidden("#auth-form") and page.is_visible("#forget-key")
            assert page.is_hidden("#auth-note") or "not accepted" not in page.inner_text("#auth-note")
            page.fill("#q", QUERY)
            page.click("#search button[type=submit]")
            p.settled_status(r"^\d+ hits? in")
            assert set(p.card_keys()) == set(expected) and len(p.card_keys()) == len(expected)
            p.images_loaded(".hit-card img", n=4)
            page.click(".hit-card >> nth=0")
            p.frame_loaded("the frame loads with the key")
            page.keyboard.press("Escape")

            # the key lives in this tab's session storage, never in the URL
            assert key not in page.url and key not in page.evaluate("document.cookie")
            assert page.evaluate("Object.values(sessionStorage)").count(key) == 1
            assert page.evaluate("Object.values(localStorage)") == []

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
