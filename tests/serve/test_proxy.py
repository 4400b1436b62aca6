"""The service behind a real reverse proxy: Debian's nginx on loopback, started here, terminating TLS
with a throwaway certificate. nginx runs docs/nginx.conf itself, changing only the listen address,
certificate paths and upstream port (tests/nginx_proxy.py).

Checked through https://127.0.0.1:PORT:
- the page loads with its headers, and the API answers as it does directly;
- the same-origin rule holds: the page's own Origin passes, a foreign one is refused;
- the audit log names the address nginx saw, and no X-Forwarded-For a client sends can change it;
- without --trusted-proxy the audit names the proxy.

The client connects to nginx from 127.0.0.2. That way the client's address, the proxy's address
(127.0.0.1) and a spoofed one (203.0.113.9) are three different values, and an audit line shows which
one the service believed. Every wait is bounded; nothing asserts how fast anything is.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")

from helpers import run_cli  # noqa: E402
from nginx_proxy import nginx_binary, nginx_proxy, self_signed  # noqa: E402
from serving import request_parts, served, wait_until  # noqa: E402

pytestmark = [
    pytest.mark.skipif(nginx_binary() is None, reason="no nginx binary (Debian: apt-get install nginx-light; "
                                                      "`make test` installs it where it can)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI for the throwaway certificate"),
]

START = 1_700_000_000.0
CLIENT = "127.0.0.2"  # where the test's requests come from (Linux routes all of 127/8 to loopback)
PROXY = "127.0.0.1"  # where nginx's requests to the service come from
SPOOF = "203.0.113.9"  # what a client claims in its own X-Forwarded-For (TEST-NET-3)
QUERY = "a woman in a red coat carrying a black backpack"
WAIT_S = 60


# ---- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(engine, video, tmp_path_factory):
    """A gallery of the two synthetic cameras, and a key file with a viewer and an admin."""
    from sen_infer import Retriever

    root = tmp_path_factory.mktemp("proxy")
    gallery = root / "gallery"
    r = Retriever(engine, gallery=gallery)
    r.gallery.add_videos([video / "cam1.mp4", video / "cam2.mp4"], start_time=START)
    assert len(r.gallery) > 0
    r.gallery.close()
    keyfile = root / "keys.json"
    keys = {role: _add_key(keyfile, f"{role}1", role) for role in ("viewer", "admin")}
    cert, key = self_signed(root / "tls")
    tls = ssl.create_default_context(cafile=str(cert))  # verifies nginx's certificate, and its name
    return SimpleNamespace(engine=engine, gallery=gallery, root=root, keyfile=keyfile, keys=keys,
                           cert=cert, key=key, tls=tls)


def _add_key(keyfile: Path, name: str, role: str) -> str:
    done = run_cli("keys", "add", name, "--role", role, "--file", keyfile, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].strip()


@pytest.fixture(scope="module")
def proxied(site):
    """The documented setup: the service with keys and `--trusted-proxy 127.0.0.1`, nginx in front."""
    with _behind_nginx(site, "trusted", ["--trusted-proxy", PROXY]) as setup:
        yield setup


@contextmanager
def _behind_nginx(site, name: str, extra: list[str]):
    """The service with keys (and `extra` options) on a free port, nginx in front of it."""
    audit = site.root / f"audit_{name}.jsonl"
    with served(site.engine, gallery=site.gallery, keys=site.keyfile,
                extra_args=["--audit", str(audit), *extra]) as direct:
        with nginx_proxy(direct, site.root / f"nginx_{name}", site.cert, site.key) as base:
            yield SimpleNamespace(base=base, direct=direct, audit=audit, work=site.root / f"nginx_{name}")


# ---- requests ------------------------------------------------------------------------------------------
def request(site, base: str, path: str, body=None, key: str | None = None, headers: dict | None = None,
            source: str | None = CLIENT, data: bytes | None = None, method: str | None = None):
    """(status, headers with lower-case names, parsed JSON or bytes) of one request to `base` (https
    through nginx, verified against the throwaway certificate, or http to the service), sent from the
    loopback address `source`."""
    scheme, _, hostport = base.partition("://")
    host, port = hostport.rsplit(":", 1)
    src = (source, 0) if source else None
    conn = (http.client.HTTPSConnection(host, int(port), context=site.tls, timeout=WAIT_S, source_address=src)
            if scheme == "https" else http.client.HTTPConnection(host, int(port), timeout=WAIT_S, source_address=src))
    data, h = request_parts(body, key, headers, data)
    try:
        conn.request(method or ("POST" if data is not None else "GET"), path, body=data, headers=h)
        r = conn.getresponse()
        raw, rh = r.read(), {k.lower(): v for k, v in r.getheaders()}
        status = r.status
    finally:
        conn.close()
    return status, rh, json.loads(raw) if rh.get("content-type", "").startswith("application/json") else raw


def audit_lines(path: Path, **match) -> list[dict]:
    """The audit log's lines whose fields equal `match` (waits, bounded, for at least one)."""
    def found():
        try:
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return None
        return [rec for rec in lines if all(rec.get(k) == v for k, v in match.items())]
    return wait_until(found, timeout=WAIT_S)


def hits_of(got: dict) -> list[tuple[int, float]]:
    return [(h["key"], round(h["score"], 4)) for h in got["hits"]]


# ---- tests ---------------------------------------------------------------------------------------------
def test_the_page_and_the_api_work_through_the_proxy(site, proxied):
    """The page keeps its isolation headers through nginx; the API answers exactly as it does directly."""
    status, headers, page = request(site, proxied.base, "/")
    assert status == 200 and b"<html" in page.lower()
    csp = headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, headers
    assert headers.get("x-frame-options") == "DENY" and headers.get("x-content-type-options") == "nosniff"
    assert request(site, proxied.base, "/static/app.js")[0] == 200
    assert request(site, proxied.base, "/api/v1/healthz")[0] == 200
    viewer = site.keys["viewer"]
    status, headers, got = request(site, proxied.base, "/api/v1/query", {"text": QUERY, "k": 10})
    assert status == 401 and headers.get("www-authenticate") == "Bearer"  # the key is still the service's check
    status, _, got = request(site, proxied.base, "/api/v1/query", {"text": QUERY, "k": 10}, key=viewer)
    assert status == 200, got
    direct = request(site, proxied.direct, "/api/v1/query", {"text": QUERY, "k": 10}, key=viewer)[2]
    assert hits_of(got) == hits_of(direct) and len(got["hits"]) > 0
    status, headers, crop = request(site, proxied.base, got["hits"][0]["crop_url"], key=viewer)
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert crop == request(site, proxied.direct, got["hits"][0]["crop_url"], key=viewer)[2]
    status, _, info = request(site, proxied.base, "/api/v1/info", key=viewer)
    assert status == 200 and info["auth"] is True


def test_an_upload_up_to_the_limit_passes_the_proxy(site, proxied):
    """docs/nginx.conf passes an upload of exactly the service's 8 MiB (a crop padded to it), and refuses one
    byte more itself. The service never sees that body, so no 502 can come of it."""
    viewer, limit = site.keys["viewer"], 8 * 1024 * 1024
    hit = request(site, proxied.base, "/api/v1/query", {"text": QUERY, "k": 1}, key=viewer)[2]["hits"][0]
    crop = request(site, proxied.base, hit["crop_url"], key=viewer)[2]
    body, kind = multipart(crop, {"k": "3"}, size=limit)
    status, _, got = request(site, proxied.base, "/api/v1/query/image", key=viewer, data=body,
                             headers={"Content-Type": kind})
    assert status == 200 and got["hits"], got  # a JPEG decoder stops at its end marker: the padding is ignored
    body, kind = multipart(crop, {"k": "3"}, size=limit + 1)
    status, headers, got = request(site, proxied.base, "/api/v1/query/image", key=viewer, data=body,
                                   headers={"Content-Type": kind})
    assert status == 413 and headers.get("content-type", "").startswith("text/html"), got  # nginx's own page


def multipart(jpeg: bytes, fields: dict, size: int) -> tuple[bytes, str]:
    """A multipart/form-data body of exactly `size` bytes: the picture as `image` (padded after its end
    marker) and `fields`; (body, its Content-Type)."""
    boundary = "sen-proxy-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="crop.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    pad = size - len(head) - len(jpeg) - len(tail) - sum(map(len, parts))
    assert pad >= 0
    return b"".join(parts) + head + jpeg + b"\0" * pad + tail, f"multipart/form-data; boundary={boundary}"


def test_the_origin_rule_holds_behind_the_proxy(site, proxied):
    """The page's own Origin (https://127.0.0.1:NGINXPORT) matches the Host nginx forwards; others are refused."""
    viewer, body = site.keys["viewer"], {"text": QUERY, "k": 3}
    own = proxied.base  # "https://127.0.0.1:PORT": what the page's fetches send as their Origin
    status, _, got = request(site, proxied.base, "/api/v1/query", body, key=viewer,
                             headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert status == 200, got
    for foreign in ("https://evil.example", "https://127.0.0.1:1", "null"):
        status, _, got = request(site, proxied.base, "/api/v1/query", body, key=viewer, headers={"Origin": foreign})
        assert status == 403 and "refused" in got["error"], (foreign, got)
    status, _, got = request(site, proxied.base, "/api/v1/query", body, key=viewer,
                             headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})
    assert status == 403, got
    # why the config forwards $http_host: with the port dropped ($host), the page's own Origin no longer
    # matches the Host the service sees, and every search from the page would be refused
    status, _, got = request(site, proxied.direct, "/api/v1/query", body, key=viewer,
                             headers={"Host": "127.0.0.1", "Origin": own})
    assert status == 403, got


def test_the_audit_names_the_client_nginx_saw(site, proxied):
    """nginx replaces any X-Forwarded-For with the address it saw. The service believes that header from
    the proxy only, so a client can neither hide behind the proxy nor claim another address."""
    viewer, tag = site.keys["viewer"], uuid.uuid4().hex[:8]
    spoof = {"X-Forwarded-For": SPOOF, "X-Forwarded-Proto": "http", "Forwarded": f"for={SPOOF}"}
    status = request(site, proxied.base, "/api/v1/query", {"text": f"via proxy {tag}", "k": 2}, key=viewer,
                     headers=spoof)[0]
    assert status == 200
    (line,) = audit_lines(proxied.audit, text=f"via proxy {tag}")
    assert line["client"] == CLIENT and line["who"] == "viewer1", line
    # from the proxy's own address too: a local user on the proxy's host gets no further
    request(site, proxied.base, "/api/v1/query", {"text": f"local {tag}", "k": 2}, key=viewer, headers=spoof,
            source=PROXY)
    assert audit_lines(proxied.audit, text=f"local {tag}")[0]["client"] == PROXY
    # a refused request is audited with the same address (the key check comes after the proxy headers)
    assert request(site, proxied.base, "/api/v1/audit", key=f"sen_wrong_{tag}", headers=spoof)[0] == 401
    refused = audit_lines(proxied.audit, route="/api/v1/audit", status=401)
    assert refused[-1]["client"] == CLIENT and SPOOF not in json.dumps(refused)
    # the header is believed from the trusted proxy only: straight to the service from elsewhere it is not
    request(site, proxied.direct, "/api/v1/query", {"text": f"direct {tag}", "k": 2}, key=viewer, headers=spoof)
    assert audit_lines(proxied.audit, text=f"direct {tag}")[0]["client"] == CLIENT
    # an admin reads the same through the proxy
    status, _, got = request(site, proxied.base, "/api/v1/audit?limit=50", key=site.keys["admin"])
    assert status == 200 and [r["client"] for r in got["lines"] if r.get("text") == f"via proxy {tag}"] == [CLIENT]


def test_without_trusted_proxy_the_audit_names_the_proxy(site):
    """Without --trusted-proxy, X-Forwarded-For is never believed: the audit names the proxy, and a
    spoofed header changes nothing."""
    tag = uuid.uuid4().hex[:8]
    with _behind_nginx(site, "untrusted", []) as plain:
        spoof = {"X-Forwarded-For": SPOOF}
        status = request(site, plain.base, "/api/v1/query", {"text": f"untrusted {tag}", "k": 2},
                         key=site.keys["viewer"], headers=spoof)[0]
        assert status == 200
        assert audit_lines(plain.audit, text=f"untrusted {tag}")[0]["client"] == PROXY
        request(site, plain.direct, "/api/v1/query", {"text": f"untrusted direct {tag}", "k": 2},
                key=site.keys["viewer"], headers=spoof)
        assert audit_lines(plain.audit, text=f"untrusted direct {tag}")[0]["client"] == CLIENT
        assert SPOOF not in plain.audit.read_text()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def test_the_search_page_through_the_proxy(site, proxied):
    """The operator's page over https through nginx: the key, a search, and the crops (fetched with the
    key). The page's fetches carry its Origin, so this is also the origin rule as a browser meets it."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary (Debian: apt-get install chromium)")
    viewer = site.keys["viewer"]
    expected = request(site, proxied.base, "/api/v1/query", {"text": QUERY, "k": 20}, key=viewer)[2]
    expected = {h["key"] for h in expected["hits"]}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(ignore_https_errors=True)  # the throwaway certificate
            page = context.new_page()
            page.set_default_timeout(WAIT_S * 1000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(proxied.base + "/")
            page.wait_for_selector("#api-key", state="visible")
            page.fill("#api-key", viewer)
            page.press("#api-key", "Enter")
            # the key is taken once the page has listed the cameras with it (searching before that races it)
            _until(page, "document.querySelectorAll('#camera-list input[type=checkbox]').length > 0")
            page.fill("#q", QUERY)
            page.press("#q", "Enter")
            shown = _until(page, "(c => !document.getElementById('results').hasAttribute('aria-busy') && c.length"
                                 " && c.map(e => Number(e.dataset.key)))([...document.querySelectorAll('.hit-card')])")
            assert set(shown) == expected, (shown, expected)
            _until(page, "(i => i && i.complete && i.naturalWidth > 0)(document.querySelector('.hit-card img'))")
            assert not errors, errors
        finally:
            browser.close()
    line = audit_lines(proxied.audit, text=QUERY, who="viewer1", client=PROXY)  # chromium connects from 127.0.0.1
    assert line[-1]["status"] == 200


def _until(page, expression: str):
    """Polls a JS expression until it is truthy (returned); AssertionError after WAIT_S. Polled from here
    because the page's Content-Security-Policy forbids `wait_for_function`'s string evaluation."""
    end = time.monotonic() + WAIT_S
    while True:
        got = page.evaluate(expression)
        if got:
            return got
        if time.monotonic() > end:
            shown = page.evaluate("document.body.innerText").strip()[:600]
            raise AssertionError(f"not within {WAIT_S} s: {expression}\nthe page shows: {shown}")
        time.sleep(0.1)

