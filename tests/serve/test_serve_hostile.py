"""The search service against hostile and careless clients, through the real server: slow connections,
huge pictures, cross-site browsers, audit-log injection and floods, aborted uploads, loose keys, and a
bounded schemathesis run. No assertion is about speed: each wait is bounded by a multiple of the timeout
it waits for (derived below), so a loaded machine makes these tests slower, never wrong."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")

from helpers import run_cli  # noqa: E402
from serving import call, served, wait_until  # noqa: E402

from sen_infer.serve.audit import AuditLog  # noqa: E402

START = 1_700_000_000.0
HEADER_S, BODY_S, KEEP_S = 1.0, 2.0, 1.0  # the short timeouts the slow-client server runs with
# a closed connection must be seen within this many times its timeout: far above any scheduling delay of a
# loaded machine, far below "held forever"
SLACK = 30


@pytest.fixture(scope="module")
def site(engine, video, tmp_path_factory):
    """An engine and a one-camera gallery, and a key file with a viewer and an admin."""
    from sen_infer import Retriever

    root = tmp_path_factory.mktemp("hostile")
    gallery = root / "gallery"
    Retriever(engine, gallery=gallery).gallery.add_video(video / "cam1.mp4", camera="cam1", start_time=START)
    keys = root / "keys.json"
    secrets = {}
    for name, role in (("op", "viewer"), ("boss", "admin")):
        done = run_cli("keys", "add", name, "--role", role, "--file", keys, timeout=60)
        assert done.returncode == 0, done.stderr
        secrets[role] = done.stdout.strip().splitlines()[-1]
    return {"engine": engine, "gallery": gallery, "root": root, "keys": keys, **secrets}


def _connect(base: str) -> socket.socket:
    u = urllib.parse.urlsplit(base)
    return socket.create_connection((u.hostname, u.port), timeout=SLACK * max(HEADER_S, BODY_S))


def _closed_after(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails the test)."""
    got = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return got
        got += chunk


def test_slow_clients_are_cut_off_and_others_are_served(site):
    args = ["--header-timeout", HEADER_S, "--body-timeout", BODY_S, "--keep-alive", KEEP_S]
    with served(site["engine"], gallery=site["gallery"], extra_args=args) as base:
        silent, trickle, body = _connect(base), _connect(base), _connect(base)
        trickle.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # headers never end
        body.sendall(b"POST /api/v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"text\": ")  # a body that never completes
        # other clients are served meanwhile
        assert call(base, "/api/v1/query", {"text": "a person", "k": 2})[0] == 200
        assert _closed_after(silent) == b""  # no request at all: closed without an answer
        assert _closed_after(trickle) == b""
        answer = _closed_after(body)
        assert answer.startswith(b"HTTP/1.1 408") and b"not received within 2 s" in answer
        # an idle keep-alive connection is closed too, after its answer
        idle = _connect(base)
        idle.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b'{"ok":true}' in _closed_after(idle)
        for s in (silent, trickle, body, idle):
            s.close()
        assert call(base, "/api/v1/healthz")[0] == 200


def _png(width: int, height: int) -> bytes:
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 2] = (40, 60, 200)  # a flat picture: a small file of many pixels
    return cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()


def _upload(base: str, data: bytes, key: str | None = None):
    boundary = "----hostile"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return call(base, "/api/v1/query/image", data=body, key=key,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=300)


def test_huge_pictures_are_decoded_within_the_budget(site):
    """Eight 40 MP uploads at once with room for one decode: every answer is a result or a 503 that
    says when to come back, and the server answers other requests throughout."""
    big = _png(6000, 6600)  # 39.6 MP, a few hundred KB
    assert len(big) < 8 << 20
    # 40 MP of BGR is 119 MB: a 150 MiB budget holds one decode at a time
    with served(site["engine"], gallery=site["gallery"], extra_args=["--decode-budget-mb", "150"]) as base:
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(_upload(base, big))) for _ in range(8)]
        for t in threads:
            t.start()
        assert call(base, "/api/v1/healthz")[0] == 200
        for t in threads:
            t.join(600)
        assert len(answers) == 8
        statuses = sorted(a[0] for a in answers)
        assert set(statuses) <= {200, 503} and 200 in statuses, statuses
        for status, headers, got in answers:
            if status == 503:
                assert headers.get("retry-after") == "1" and "try again" in got["error"]
        # alone, it is searched with
        status, _, got = _upload(base, big)
        assert status == 200 and got["hits"]
        status, _, got = _upload(base, _zero_png())
        assert status == 400 and "no pixels" in got["error"]


def _zero_png() -> bytes:
    """A PNG header stating 0 x 0 pixels (no encoder writes one; a client can)."""
    png = _png(4, 4)
    return png[:16] + (0).to_bytes(4, "big") * 2 + png[24:]


def test_browsers_of_other_sites_get_nothing(site):
    with served(site["engine"], gallery=site["gallery"]) as base:
        for path in ("/", "/static/index.html"):
            status, headers, _ = call(base, path)
            assert status == 200 and "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in call(base, "/docs")[1]["content-security-policy"]
        key = call(base, "/api/v1/query", {"text": "a person", "k": 1})[2]["hits"][0]["key"]
        status, headers, _ = call(base, f"/api/v1/crops/{key}.jpg", headers={"Sec-Fetch-Site": "same-origin"})
        assert status == 200 and headers["cross-origin-resource-policy"] == "same-origin"
        for path in (f"/api/v1/crops/{key}.jpg", f"/api/v1/frames/{key}.jpg", f"/api/v1/crops/{10**12}.jpg"):
            for site_ in ("cross-site", "same-site"):  # an <img> of another page: no Origin, but Sec-Fetch-Site
                status, _, got = call(base, path, headers={"Sec-Fetch-Site": site_, "Sec-Fetch-Dest": "image"})
                assert status == 403 and site_ in got["error"], (path, site_)
        link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        assert call(base, "/", headers=link)[0] == 200  # a link to the service from the operator's wiki works
        assert call(base, "/api/v1/cameras", headers=link)[0] == 403  # but not a link into the API


# Every character some reader takes as a line break (UAX #14's mandatory breaks BK, CR, LF, NL; Python's
# str.splitlines adds FS, GS, RS), every C1 control, DEL, and the bidi / zero-width format characters.
BREAKERS = ("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x7f" + "".join(map(chr, range(0x80, 0xA0)))
            + "\u202e\u2066\u200b\ufeff")


def _audit_lines(path: Path) -> list[dict]:
    raw = path.read_text(encoding="utf-8")
    assert raw.endswith("\n")
    lines = raw.splitlines()  # the strictest line splitter there is
    assert len(lines) == raw.count("\n"), "a line break hid inside a line"
    return [json.loads(line) for line in lines]


def test_audit_lines_stay_lines_and_name_who_sent_them(site, tmp_path):
    audit = tmp_path / "audit.jsonl"
    text = "a man " + BREAKERS + " in red"
    with served(site["engine"], gallery=site["gallery"], keys=site["keys"], extra_args=["--audit", audit]) as base:
        viewer = site["viewer"]
        assert call(base, "/api/v1/query", {"text": text, "k": 1, "camera": ["cam1", BREAKERS]}, key=viewer)[0] == 200
        quoted = urllib.parse.quote("/api/v1/x" + BREAKERS)
        assert call(base, quoted)[0] == 401  # refused before routing: the path is audited as sent
        # malformed JSON: with a valid key a 400 audited under the key's name, without one a 401
        bad = {"Content-Type": "application/json"}
        assert call(base, "/api/v1/query", data=b'{"text": ', headers=bad, key=viewer)[0] == 400
        assert call(base, "/api/v1/query", data=b'{"text": ', headers=bad)[0] == 401
        # a body refused on its stated length, before FastAPI sees it, is audited with its key too
        s = _connect(base)
        s.sendall(b"POST /api/v1/query/image HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  + viewer.encode() + b"\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  b"Content-Length: 9437184\r\n\r\n")
        assert _closed_after(s).startswith(b"HTTP/1.1 413")
        s.close()
    records = _audit_lines(audit)
    assert any(r["status"] == 413 and r["who"] == "op" and "limit" in r["error"] for r in records)
    search = next(r for r in records if r.get("text") == text)
    assert search["filters"]["camera"] == ["cam1", BREAKERS] and search["who"] == "op"
    assert any(r.get("route") == "/api/v1/x" + BREAKERS and r["status"] == 401 for r in records)
    malformed = [r for r in records if "malformed JSON" in r.get("error", "")]
    assert len(malformed) == 1 and malformed[0]["who"] == "op" and malformed[0]["status"] == 400


def test_refusals_are_summarised_past_the_budget_and_aborts_are_audited(site, tmp_path):
    audit, output = tmp_path / "audit.jsonl", []
    with served(site["engine"], gallery=site["gallery"], keys=site["keys"], extra_args=["--audit", audit],
                output=output) as base:
        for i in range(45):
            assert call(base, "/api/v1/cameras", headers={"Authorization": f"Bearer wrong{i}"})[0] == 401
        # an upload cut off mid-body by its client
        s = _connect(base)
        s.sendall(b"POST /api/v1/query/image HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  + site["viewer"].encode() + b"\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  b"Content-Length: 100000\r\n\r\n--x\r\nContent-Disposition: form-data; name=\"image\"; "
                  b"filename=\"a.jpg\"\r\n\r\n" + b"\xff" * 5000)
        s.close()
        wait_until(lambda: any(r.get("status") == 499 for r in _audit_lines(audit)), timeout=SLACK * BODY_S)
    records = _audit_lines(audit)
    refused = [r for r in records if r.get("status") == 401]
    summary = [r for r in records if r.get("event") == "refusals suppressed"]
    assert len(refused) == 30 and len(summary) == 1 and summary[0]["count"] == 15  # written at the stop
    aborted = next(r for r in records if r.get("status") == 499)
    assert aborted["who"] == "op" and "aborted" in aborted["error"]
    assert not any("Traceback" in line or "unhandled" in line for line in output), output[-20:]


def test_audit_rotation_loses_and_repeats_nothing(tmp_path):
    """Two writers of one log (two server processes: each has its own descriptor) rotating it by size."""
    path = tmp_path / "audit.jsonl"
    writers = [AuditLog(path, max_bytes=4000, keep=1000), AuditLog(path, max_bytes=4000, keep=1000)]

    def write(w: AuditLog, who: int):
        for i in range(300):
            w.record(who=who, n=i)

    threads = [threading.Thread(target=write, args=(w, n)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for w in writers:
        w.close()
    files = [path] + sorted(tmp_path.glob("audit.jsonl.*[0-9]"))
    assert len(files) > 3  # it did rotate, several times (600 lines of about 60 bytes, 4000 per file)
    seen = [(r["who"], r["n"]) for f in files for r in _audit_lines(f)]
    assert sorted(seen) == [(w, i) for w in (0, 1) for i in range(300)]
    assert [r["n"] for r in AuditLog(path, max_bytes=4000, keep=1000).tail(500) if r["who"] == 1][-1] == 299


def test_keys_are_decimal_and_whole_numbers_are_integers(site):
    with served(site["engine"], gallery=site["gallery"]) as base:
        key = call(base, "/api/v1/query", {"text": "a person", "k": 1})[2]["hits"][0]["key"]
        assert call(base, f"/api/v1/rows/{key}")[0] == 200
        for loose in (f"+{key}", f"0{key}", f"{key}.0", f"{key}%20", "1_0", f"{key}e0", "%D9%A1"):
            status, _, got = call(base, f"/api/v1/rows/{loose}")
            assert status == 422 and "decimal digits" in got["error"], (loose, got)
        status, _, got = call(base, "/api/v1/query/image", {"key": float(key), "k": 3.0})
        assert status == 200 and got["hits"][0]["key"] == key  # JSON Schema: 17917.0 is the integer 17917
        assert call(base, "/api/v1/query", {"text": "a person", "k": 2.5})[0] == 422
        assert "rows" not in got  # the gallery's size is /info's: a query never counts every shard


@pytest.mark.skipif(shutil.which("schemathesis") is None and not (Path(sys.executable).parent / "schemathesis").exists(),
                    reason="schemathesis is not installed (pip install -e '.[dev]')")
def test_schemathesis_finds_no_server_error_and_no_schema_violation(site, tmp_path):
    """A bounded, seeded schemathesis run against the real server with an admin key: no 5xx, every
    status and body as the OpenAPI schema declares, invalid requests refused. `positive_data_acceptance`
    is left out: the schema cannot state that an upload's bytes must be a JPEG, or that since <= until."""
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
              "response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,"
              "ignored_auth")
    with served(site["engine"], gallery=site["gallery"], keys=site["keys"],
                extra_args=["--audit", tmp_path / "audit.jsonl"]) as base:
        st = Path(sys.executable).parent / "schemathesis"
        done = subprocess.run([str(st) if st.exists() else "schemathesis", "run", f"{base}/openapi.json",
                               "--checks", checks, "-n", "25", "--seed", "7", "--no-shrink",
                               "-H", f"Authorization: Bearer {site['admin']}", "--request-timeout", "120"],
                              capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:]
    assert " passed" in done.stdout and "failure" not in done.stdout.split("SUMMARY")[-1], done.stdout[-4000:]
