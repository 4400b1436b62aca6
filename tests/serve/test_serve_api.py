"""The search service through the real server: `python -m sen_infer serve` (uvicorn) on a free loopback
port, over a real gallery made from synthetic camera video, with the real model. Every endpoint, the
filters, access control, the audit log, hostile paths and oversized or malformed requests."""

import http.client
import json
import shutil
import urllib.parse
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")

from helpers import run_cli  # noqa: E402
from serving import call, served, wait_until  # noqa: E402
from videos import distinct_copy  # noqa: E402

START = 1_700_000_000.0  # the cameras' clock: Unix seconds


@pytest.fixture(scope="module")
def site(engine, video, synth_learn, tmp_path_factory):
    """An engine, a gallery of two cameras' video plus two pictures, and a file beside it that no route
    may ever return."""
    from sen_infer import Retriever

    root = tmp_path_factory.mktemp("site")
    gallery = root / "gallery"
    r = Retriever(engine, gallery=gallery)
    for cam in ("cam1", "cam2"):
        r.gallery.add_video(video / f"{cam}.mp4", camera=cam, start_time=START)
    pictures = sorted((synth_learn / "imgs").rglob("*.jpg"))[:2]
    odd = root / "door photos (2)"
    odd.mkdir()
    for i, p in enumerate(pictures):
        shutil.copy(p, odd / f"visitor #{i} é.jpg")
    r.gallery.add_images([str(odd)], camera="door", timestamp=START + 100)
    (root / "secret.txt").write_text("TOPSECRET-do-not-serve")
    return {"engine": engine, "gallery": gallery, "root": root, "retriever": r}


@pytest.fixture(scope="module")
def server(site):
    with served(site["engine"], gallery=site["gallery"]) as base:
        yield base


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte (no client-side normalisation of '..' or escapes)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_probes_info_cameras_and_docs(server, site):
    assert call(server, "/api/v1/healthz")[0:3:2] == (200, {"ok": True})
    status, _, ready = call(server, "/api/v1/readyz")
    assert status == 200 and ready["ready"]
    status, _, info = call(server, "/api/v1/info")
    stats = site["retriever"].gallery.stats()
    assert status == 200 and info["rows"] == stats["rows"] > 0
    assert info["cameras"] == ["cam1", "cam2", "door"] and info["auth"] is False
    assert info["backend"] and info["model"] and info["limits"]["max_k"] == 200
    cams = call(server, "/api/v1/cameras")[2]["cameras"]
    assert [c["name"] for c in cams] == ["cam1", "cam2", "door"]
    assert sum(c["rows"] for c in cams) == info["rows"]
    assert all(START <= c["first"] <= c["last"] for c in cams)
    status, _, page = call(server, "/")
    assert status == 200 and b"<html" in page.lower()
    for asset in ("/static/app.js", "/static/app.css", "/static/favicon.svg"):
        status, headers, _ = call(server, asset)
        assert status == 200 and headers["cache-control"] == "no-cache", asset  # no stale script after an upgrade
    status, _, docs = call(server, "/docs")
    assert status == 200 and b"/docs-static/swagger-ui-bundle.js" in docs  # served here, not from a CDN
    assert call(server, "/docs-static/swagger-ui-bundle.js")[0] == 200
    spec = call(server, "/openapi.json")[2]
    assert {"/api/v1/query", "/api/v1/query/image", "/api/v1/frames/{key}.jpg"} <= set(spec["paths"])


def same_hits(api: list[dict], sdk: list) -> None:
    """The server's hits are the SDK's. The server's process may run the text encoder with other thread
    counts than this one, so scores may differ in the last float32 bits (~1e-6); 1e-4 bounds that, and
    only hits whose scores are further apart than that must keep their order."""
    assert len(api) == len(sdk)
    for a, s in zip(api, sdk):
        assert abs(a["score"] - s.score) < 1e-4
    strict = [s.key for s in sdk if all(abs(s.score - o.score) > 1e-4 for o in sdk if o.key != s.key)]
    assert [a["key"] for a in api if a["key"] in strict] == strict


def test_query_matches_the_sdk_and_filters_apply(server, site):
    r = site["retriever"]
    text = "a woman in a red coat carrying a black backpack"
    status, _, got = call(server, "/api/v1/query", {"text": text, "k": 8})
    assert status == 200 and "rows" not in got  # the gallery's size is /info's
    same_hits(got["hits"], r.query(text, k=8))
    hit = got["hits"][0]
    assert hit["crop_url"] == f"/api/v1/crops/{hit['key']}.jpg" and hit["frame_url"] == f"/api/v1/frames/{hit['key']}.jpg"
    assert "crop_path" not in hit  # server paths are not part of the answer

    for camera, allowed in (("cam1", {"cam1"}), (["cam1", "door"], {"cam1", "door"})):
        hits = call(server, "/api/v1/query", {"text": text, "k": 50, "camera": camera})[2]["hits"]
        assert hits and {h["camera"] for h in hits} <= allowed
        same_hits(hits, r.query(text, k=50, camera=camera))
    every = call(server, "/api/v1/query", {"text": text, "k": 50})[2]["hits"]
    assert call(server, "/api/v1/query", {"text": text, "k": 50, "camera": []})[2]["hits"] == every
    assert call(server, "/api/v1/query", {"text": text, "camera": "no such camera"})[2]["hits"] == []
    window = call(server, "/api/v1/query", {"text": text, "k": 50, "since": START + 2, "until": START + 5})[2]["hits"]
    assert window and all(START + 2 <= h["timestamp"] <= START + 5 for h in window)
    assert call(server, "/api/v1/query", {"text": text, "per_track": False})[0] == 200
    # each hit carries its crop score; a minimum leaves out the known lower ones, as the SDK does
    assert all("quality" in h for h in every)
    known = sorted({h["quality"] for h in every if h["quality"] is not None})
    if known:
        best = call(server, "/api/v1/query", {"text": text, "k": 50, "min_quality": known[-1]})[2]["hits"]
        same_hits(best, r.query(text, k=50, min_quality=known[-1]))
        assert all(h["quality"] is None or h["quality"] >= known[-1] for h in best)


@pytest.mark.parametrize("body, status, words", [
    ({"text": ""}, 422, "text"),
    ({"text": "   "}, 400, "empty"),
    ({"text": "x" * 1001}, 422, "at most 1000"),  # the schema states the bound
    ({"text": "a man", "k": 0}, 422, "k"),
    ({"text": "a man", "k": 201}, 422, "200"),  # the schema states the bound
    ({"text": "a man", "k": "5"}, 422, "k"),
    ({"text": "a man", "k": True}, 422, "k"),
    ({"text": "a man", "camera": 7}, 422, "camera"),
    ({"text": "a man", "since": 10, "until": 5}, 400, "empty"),
    ({"text": "a man", "colour": "red"}, 422, "colour"),
    ({"text": "a man", "min_quality": 1.5}, 422, "min_quality"),
    ({"k": 3}, 422, "text"),
])
def test_bad_queries_are_one_line_4xx(server, body, status, words):
    got_status, _, got = call(server, "/api/v1/query", body)
    assert got_status == status, got
    assert set(got) == {"error"} and words in got["error"] and "\n" not in got["error"]
    assert "Traceback" not in got["error"]


def test_malformed_and_oversized_bodies(server):
    for data in (b'{"text": "a man", ', b"not json", b'{"text": NaN}', b"\xff\xfe"):
        status, _, got = call(server, "/api/v1/query", data=data, headers={"Content-Type": "application/json"})
        assert status in (400, 422) and set(got) == {"error"}, (data, got)
    status, _, got = call(server, "/api/v1/query", body={"text": "a man", "since": float("nan")})
    assert status == 422 and "finite" in got["error"]  # the schema's numbers are finite
    status, _, got = call(server, "/api/v1/query", {"text": "a" * 70_000})  # over the 64 KiB JSON limit
    assert status == 413 and "limit" in got["error"]
    # a chunked body states no length: it is cut off while it streams in
    u = urllib.parse.urlsplit(server)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    chunks = (b'{"text": "' + b"b" * 8192 for _ in range(12))
    conn.request("POST", "/api/v1/query", body=chunks, headers={"Content-Type": "application/json"},
                 encode_chunked=True)
    r = conn.getresponse()
    assert r.status == 413 and "limit" in json.loads(r.read())["error"]
    conn.close()
    assert call(server, "/api/v1/healthz")[0] == 200  # and the server is still there


def test_crops_and_frames_are_the_evidence(server, site):
    r = site["retriever"]
    keys = r.gallery.keys()
    rows = r.gallery.rows(keys)
    video_row = next(row for row in rows.values() if row.frame >= 0 and row.bbox[2] >= 24)
    status, headers, crop = call(server, f"/api/v1/crops/{video_row.key}.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert crop == Path(video_row.crop_path).read_bytes()

    status, headers, jpeg = call(server, f"/api/v1/frames/{video_row.key}.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    cap = cv2.VideoCapture(str(Path(r.gallery.store.source_record(video_row.source)["path"])))
    assert frame.shape[:2] == (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    cap.release()
    # the box's inside (away from the drawn edge) is the stored crop: the frame is the crop's own frame.
    # Both are JPEGs of the same pixels; a mean difference under 12 grey levels allows for the two
    # encodings, while another frame of a moving person, or another person, differs by far more.
    x, y, w, h = video_row.bbox
    stored = cv2.imread(video_row.crop_path)
    inner = (slice(4, h - 4), slice(4, w - 4))
    diff = np.abs(frame[y:y + h, x:x + w][inner].astype(int) - stored[inner].astype(int)).mean()
    assert diff < 12, diff

    picture = next(row for row in rows.values() if row.frame < 0)
    status, _, jpeg = call(server, f"/api/v1/frames/{picture.key}.jpg")
    assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == \
        (picture.bbox[3], picture.bbox[2])
    assert call(server, f"/api/v1/crops/{picture.key}.jpg")[0] == 200

    missing = max(keys) + 1000
    for route in (f"/api/v1/crops/{missing}.jpg", f"/api/v1/frames/{missing}.jpg", f"/api/v1/rows/{missing}"):
        status, _, got = call(server, route)
        assert status == 404 and str(missing) in got["error"]

    status, _, ctx = call(server, f"/api/v1/rows/{video_row.key}")
    assert status == 200 and ctx["row"]["key"] == video_row.key
    assert video_row.key in [t["key"] for t in ctx["track"]]
    assert ctx["nearby"] and all(n["camera"] == video_row.camera for n in ctx["nearby"])
    assert video_row.key not in [n["key"] for n in ctx["nearby"]]


def test_a_row_lists_every_name_of_its_recording_and_its_frame_follows_them(server, site, video):
    """A byte copy of an ingested recording under an odd name stores nothing; the row's context lists the
    new name after the one it was ingested from (the page shows them under "Also named"), and when the first
    file is moved away the frame is decoded from the other name, until no name holds the content."""
    r = site["retriever"]
    first = distinct_copy(video / "cam2.mp4", site["root"] / "gate cam.mp4", mark=5)
    assert r.gallery.add_video(first, camera="gate", start_time=START).added > 0
    twin = site["root"] / "gate cam renamed [ü #2].mp4"
    shutil.copy(first, twin)
    before = len(r.gallery)
    rep = r.gallery.add_video(twin, camera="elsewhere", start_time=START + 3600)
    assert rep.added == 0 and len(r.gallery) == before
    key = r.gallery.keys(camera="gate")[0]
    status, _, ctx = call(server, f"/api/v1/rows/{key}")
    assert status == 200
    assert ctx["names"] == [str(first.resolve()), str(twin.resolve())]
    first.rename(first.with_suffix(".moved"))  # the first name is gone: the other one shows the frame
    status, _, jpeg = call(server, f"/api/v1/frames/{key}.jpg")
    assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
    twin.unlink()
    status, _, got = call(server, f"/api/v1/frames/{key}.jpg")
    assert status == 410 and "nor under another name" in got["error"]


def test_a_replaced_video_shows_no_frame(server, site, video):
    """A frame is shown only from the very file the row came from: after the file is overwritten with
    other footage, its rows' frames are 410 Gone, never another video's frame."""
    r = site["retriever"]
    copy = site["root"] / "lobby cam [copy].mp4"
    distinct_copy(video / "cam1.mp4", copy, mark=3)  # new footage (a byte copy would be an alias of cam1.mp4)
    r.gallery.add_video(copy, camera="lobby", start_time=START)
    key = r.gallery.keys(camera="lobby")[0]
    wait_until(lambda: call(server, f"/api/v1/rows/{key}")[0] == 200)
    assert call(server, f"/api/v1/frames/{key}.jpg")[0] == 200
    shutil.copy(video / "cam2.mp4", copy)  # the same name, other footage
    status, _, got = call(server, f"/api/v1/frames/{key}.jpg")  # rendered and cached before: checked again
    assert status == 410 and "changed" in got["error"]
    other = r.gallery.keys(camera="lobby")[-1]
    status, _, got = call(server, f"/api/v1/frames/{other}.jpg")  # not rendered before: nothing cached
    assert status == 410 and "changed" in got["error"]
    copy.unlink()
    newest = r.gallery.keys(camera="lobby")[1]
    status, _, got = call(server, f"/api/v1/frames/{newest}.jpg")
    assert status == 410 and "no longer" in got["error"]


@pytest.mark.parametrize("path", [
    "/api/v1/crops/../../secret.txt",
    "/api/v1/crops/..%2F..%2Fsecret.txt.jpg",
    "/api/v1/crops/%2e%2e%2f%2e%2e%2fsecret.txt.jpg",
    "/api/v1/frames/..%2f..%2f..%2fsecret.txt.jpg",
    "/api/v1/frames/1%2F..%2F..%2Fsecret.txt.jpg",
    "/api/v1/rows/..%2Fsecret.txt",
    "/api/v1/crops/-1.jpg",
    "/api/v1/crops/1e3.jpg",
    "/api/v1/frames/99999999999999999999999.jpg",  # past SQLite's INTEGER: was a 500 before it was bounded
    "/api/v1/rows/18446744073709551616",
    "/static/../../../secret.txt",
    "/static/..%2F..%2F..%2Fsecret.txt",
    "/static/%2e%2e/%2e%2e/store.py",
    "/docs-static/..%2F..%2F..%2F..%2Fsecret.txt",
    "/api/v1/crops/1.jpg/../../gallery.db",
])
def test_no_path_reaches_the_file_system(server, site, path):
    status, body = raw_get(server, path)
    assert status in (400, 404, 422), (path, status)
    assert b"TOPSECRET" not in body and b"SQLite format" not in body and b"def " not in body


def test_find_similar_and_upload(server, site, synth_learn):
    r = site["retriever"]
    key = r.gallery.keys(camera="cam2")[0]
    status, _, got = call(server, "/api/v1/query/image", {"key": key, "k": 5})
    assert status == 200 and got["hits"][0]["key"] == key and got["hits"][0]["score"] > 0.999
    same_hits(got["hits"], r.query_similar(key, k=5))
    assert call(server, "/api/v1/query/image", {"key": 10**9})[0] == 404
    assert call(server, "/api/v1/query/image", {"key": "7"})[0] == 422
    assert call(server, "/api/v1/query/image", {"key": 10**30})[0] == 422

    picture = sorted((synth_learn / "imgs").rglob("*.jpg"))[5]
    status, _, got = upload(server, picture.read_bytes(), fields={"k": "4", "camera": ["cam1", "cam2"]})
    assert status == 200 and 0 < len(got["hits"]) <= 4 and {h["camera"] for h in got["hits"]} <= {"cam1", "cam2"}
    same_hits(got["hits"], r.query_image(str(picture), k=4, camera=["cam1", "cam2"]))

    png = cv2.imencode(".png", cv2.imread(str(picture)))[1].tobytes()
    cases = [
        (b"GIF89a not a picture", {}, 415, "JPEG or PNG"),
        (png[: len(png) // 3], {}, 400, "cannot be decoded"),
        (png[:16] + (100_000).to_bytes(4, "big") * 2 + png[24:], {}, 413, "MP"),  # a decompression bomb's header
        (b"", {}, 400, "empty"),
        (picture.read_bytes(), {"k": "many"}, 422, "k"),
        (picture.read_bytes(), {"per_track": "maybe"}, 422, "per_track"),
        (picture.read_bytes(), {"cameras": "cam2"}, 422, "cameras"),  # a typo must not widen the search
        (picture.read_bytes(), {"k": ["3", "4"]}, 422, "k"),
    ]
    for data, fields, want, words in cases:
        status, _, got = upload(server, data, fields=fields)
        assert status == want and words in got["error"], (want, got)
    # over the 8 MiB upload limit: refused on the stated length, before a byte of the body is read
    u = urllib.parse.urlsplit(server)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", "/api/v1/query/image")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(9 * 1024 * 1024))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "8388608" in json.loads(r.read())["error"]
    conn.close()
    status, _, got = call(server, "/api/v1/query/image", data=b"x", headers={"Content-Type": "text/plain"})
    assert status == 415
    status, _, got = upload(server, None, fields={"k": "3"})
    assert status == 400 and "image" in got["error"]


def upload(base: str, data: bytes | None, fields: dict):
    """A multipart/form-data POST to /query/image with `data` as the file field `image`."""
    boundary = "----sen-test-boundary"
    parts = []
    for name, value in fields.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{v}\r\n'.encode())
    if data is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="probe.jpg"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return call(base, "/api/v1/query/image", data=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_pages_elsewhere_cannot_use_the_service(server):
    """Without keys the service trusts loopback, so it answers only requests addressed to a loopback
    name (a DNS-rebound name is refused) and no cross-site browser request."""
    u = urllib.parse.urlsplit(server)

    def get(path, headers):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.putrequest("GET", path, skip_host=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    assert get("/api/v1/cameras", {"Host": f"evil.example:{u.port}"})[0] == 403
    assert get("/api/v1/cameras", {"Host": f"localhost:{u.port}"})[0] == 200
    status, body = get("/api/v1/cameras", {"Host": f"127.0.0.1:{u.port}", "Origin": "http://evil.example"})
    assert status == 403 and b"cross-site" in body
    assert get("/api/v1/cameras", {"Host": f"127.0.0.1:{u.port}", "Origin": f"http://127.0.0.1:{u.port}"})[0] == 200
    status, _, _ = call(server, "/api/v1/query", {"text": "a man"}, headers={"Origin": "http://evil.example"})
    assert status == 403


def test_every_search_is_audited(server, site):
    text = "audited: a man in a green jacket"
    n = len(call(server, "/api/v1/query", {"text": text, "k": 3, "camera": "cam1"})[2]["hits"])
    call(server, "/api/v1/query", {"text": "x" * 1001})
    lines = [json.loads(line) for line in (site["gallery"] / "audit.jsonl").read_text().splitlines()]
    mine = [rec for rec in lines if rec.get("text") == text]
    assert mine and mine[-1]["hits"] == n and mine[-1]["who"] == "local" and mine[-1]["status"] == 200
    assert mine[-1]["filters"]["camera"] == "cam1" and mine[-1]["client"] == "127.0.0.1" and mine[-1]["at"]
    assert any(rec.get("status") == 422 and "at most 1000" in rec.get("error", "") for rec in lines)
    call(server, "/api/v1/query", {"text": "too many", "k": 500, "camera": ["cam1"]})  # past the schema's bound
    call(server, "/api/v1/query", data=b'{"text": ', headers={"Content-Type": "application/json"})
    call(server, "/api/v1/query", {"text": "a man", "colour": "red"})
    tricky = "a man in a \u202eteehs der\u202c coat"  # a bidi override would reorder a terminal's display
    call(server, "/api/v1/query", {"text": tricky, "k": 1})
    raw = (site["gallery"] / "audit.jsonl").read_text()
    lines = [json.loads(line) for line in raw.splitlines()]
    assert any(rec.get("status") == 422 and rec.get("error", "").startswith("k:") for rec in lines)
    assert any(rec.get("status") == 400 and "malformed JSON" in rec.get("error", "") for rec in lines)
    assert any(rec.get("status") == 422 and "colour" in rec.get("error", "") for rec in lines)
    assert "\u202e" not in raw and "\\u202e" in raw and any(rec.get("text") == tricky for rec in lines)


def test_rows_committed_by_another_process_are_served(server, site, synth_learn):
    """An ingest in another process while the server runs: its rows are searchable without a restart."""
    before = call(server, "/api/v1/info")[2]["rows"]
    folder = site["root"] / "late pictures"
    folder.mkdir()
    for p in sorted((synth_learn / "imgs").rglob("*.jpg"))[10:13]:
        shutil.copy(p, folder / p.name)
    done = run_cli("ingest", "--engine", site["engine"], "--gallery", site["gallery"], "--camera", "late", "--quiet",
                   folder)
    assert done.returncode == 0, done.stderr
    assert call(server, "/api/v1/info")[2]["rows"] == before + 3
    hits = call(server, "/api/v1/query", {"text": "a person", "k": 10, "camera": "late"})[2]["hits"]
    assert len(hits) == 3 and all(call(server, h["crop_url"])[0] == 200 for h in hits)


# ---- access control ---------------------------------------------------------------------------------
def add_key(keyfile: Path, name: str, role: str) -> str:
    done = run_cli("keys", "add", name, "--role", role, "--file", keyfile, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_keys_roles_and_audit(site, tmp_path):
    keyfile = tmp_path / "keys.json"
    viewer, admin = add_key(keyfile, "operator1", "viewer"), add_key(keyfile, "supervisor", "admin")
    stored = keyfile.read_text()
    assert viewer not in stored and admin not in stored and "operator1" in stored  # only hashes are kept
    audit = tmp_path / "audit" / "searches.jsonl"
    with served(site["engine"], gallery=site["gallery"], keys=keyfile, extra_args=["--audit", str(audit)]) as base:
        assert call(base, "/api/v1/healthz")[0] == 200 and call(base, "/api/v1/readyz")[0] == 200
        assert call(base, "/")[0] == 200  # the page itself asks for the key
        some_key = site["retriever"].gallery.keys()[0]
        for path, body in (("/api/v1/query", {"text": "a man"}), ("/api/v1/info", None), ("/api/v1/cameras", None),
                           (f"/api/v1/crops/{some_key}.jpg", None), (f"/api/v1/frames/{some_key}.jpg", None),
                           (f"/api/v1/rows/{some_key}", None), ("/api/v1/audit", None)):
            for header in ({}, {"Authorization": "Bearer sen_wrong"}, {"Authorization": f"Basic {viewer}"},
                           {"Authorization": "Bearer "}, {"Authorization": viewer}):
                status, headers, got = call(base, path, body, headers=header)
                assert status == 401 and "key" in got["error"], (path, header, got)
            assert headers.get("www-authenticate") == "Bearer"
        status, _, got = call(base, "/api/v1/query", {"text": "audited by key", "k": 2}, key=viewer)
        assert status == 200 and call(base, "/api/v1/info", key=viewer)[2]["auth"] is True
        assert call(base, f"/api/v1/frames/{some_key}.jpg", key=viewer)[0] == 200
        status, _, got = call(base, "/api/v1/audit", key=viewer)
        assert status == 403 and "admin" in got["error"]
        status, _, got = call(base, "/api/v1/audit?limit=50", key=admin)
        assert status == 200
        mine = [rec for rec in got["lines"] if rec.get("text") == "audited by key"]
        assert mine and mine[-1]["who"] == "operator1" and mine[-1]["role"] == "viewer" and "hits" in mine[-1]
        assert any(rec["status"] == 401 for rec in got["lines"]) and any(rec["status"] == 403 for rec in got["lines"])
        again = call(base, "/api/v1/audit?limit=5", key=admin)[2]["lines"]
        assert again[-1]["route"] == "/api/v1/audit" and again[-1]["who"] == "supervisor"  # reading it is logged
        assert call(base, "/api/v1/audit?limit=0", key=admin)[0] == 422  # the schema states the bounds
    assert audit.is_file() and "operator1" in audit.read_text()


def cli(*args, timeout=120):
    return run_cli(*args, timeout=timeout)


def test_serve_refuses_what_would_be_unsafe_or_cannot_work(site, tmp_path):
    engine = str(site["engine"])
    for args, words in (
        (["--host", "0.0.0.0"], "without access keys"),
        (["--host", "192.168.1.20"], "without access keys"),
        (["--keys", str(tmp_path / "none.json")], "does not exist"),
        (["--gallery", str(tmp_path / "no gallery here")], "gallery"),
        (["--port", "70000"], "TCP port"),
        (["--trusted-proxy", "127.0.0.1"], "needs --keys"),  # behind a proxy everyone arrives from loopback
    ):
        done = cli("serve", "--engine", engine, "--gallery", str(site["gallery"]), "--port", "0", *args)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and words in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty.json"
    empty.write_text('{"format": "sen-infer-keys/1", "keys": []}')
    done = cli("serve", "--engine", engine, "--gallery", str(site["gallery"]), "--keys", str(empty), "--port", "0")
    assert done.returncode == 2 and "no keys" in done.stderr
    empty.write_text("{not json")
    done = cli("serve", "--engine", engine, "--gallery", str(site["gallery"]), "--keys", str(empty), "--port", "0")
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_keys_cli(tmp_path):
    f = tmp_path / "k.json"
    first = cli("keys", "add", "alice", "--role", "admin", "--file", str(f))
    assert first.returncode == 0 and first.stdout.strip().startswith("sen_")
    again = cli("keys", "add", "alice", "--file", str(f))
    assert again.returncode == 2 and "exists already" in again.stderr
    assert cli("keys", "add", "../bob", "--file", str(f)).returncode == 2
    assert cli("keys", "add", "--file", str(f)).returncode == 2
    listed = cli("keys", "list", "--file", str(f))
    assert "alice\tadmin" in listed.stdout and first.stdout.strip() not in listed.stdout
    assert cli("keys", "remove", "alice", "--file", str(f)).returncode == 0
    assert cli("keys", "remove", "alice", "--file", str(f)).returncode == 2
    assert (f.stat().st_mode & 0o777) == 0o600


def test_the_listening_socket_is_tcp_so_responses_are_not_delayed():
    """asyncio turns Nagle's algorithm off only for accepted sockets whose proto is IPPROTO_TCP; a socket
    made with proto 0 made every keep-alive response wait for a delayed ACK (measured: 48 ms instead of
    3 ms per query). The listening socket's proto is what accepted sockets inherit."""
    import socket

    from sen_infer.serve.run import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
