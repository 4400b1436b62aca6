"""The search service under hostile clients, measured against the real server (issue goals):

- **uploads**: 8 concurrent 40 MP PNG uploads; `/healthz` latency (p50/p99) from another client while they
  run, and the server's peak RSS (sampled from /proc) against its RSS before.
- **slow**: 200 slowloris connections (headers never finished) and 20 uploads at 1 byte/s, while 4 clients
  search; when each slow connection was closed (against the documented timeouts), and the searches' p99
  against their p99 alone, measured in the same run.
- **shards**: a sharded root of 1,000 camera shards (24 rows each, the engine's dimension); one-camera and
  unfiltered queries through the server, p50 at the client and as the server reports it.

    python -m benchmarks.serve_hostile               # after `make demo`; about 5 minutes on 2 cores
    python -m benchmarks.serve_hostile --only shards

Results: benchmarks/results/serve_hostile.{json,md}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import report
from benchmarks.serve import percentile

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "serve_hostile"
START = 1_700_000_000.0


class Server:
    """`python -m sen_infer serve` as a child process whose PID is known (for its RSS)."""

    def __init__(self, engine: Path, gallery: Path, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "sen_infer", "serve", "--engine", str(engine), "--gallery",
                                      str(gallery), "--port", "0", "--quiet", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].strip()
                self.host, self.port = url.split("//")[1].rsplit(":", 1)[0], int(url.rsplit(":", 1)[1])
                break
        else:
            raise RuntimeError("the server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
        c = conn or http.client.HTTPConnection(self.host, self.port, timeout=600)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        out = r.status, r.read()
        if conn is None:
            c.close()
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _png_40mp() -> bytes:
    img = np.zeros((6600, 6000, 3), np.uint8)
    img[:3300] = (40, 60, 200)
    return cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()


def _multipart(data: bytes) -> tuple[bytes, dict]:
    b = "----bench"
    body = (f'--{b}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={b}"}


def _probe_latency(server: Server, path: str, stop: threading.Event, out: list, body=None, headers=None):
    """Requests `path` on one keep-alive connection until `stop`; appends each latency (ms) to `out`."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
    while not stop.is_set():
        t0 = time.perf_counter()
        status, _ = server.request("POST" if body else "GET", path, body, headers, conn)
        out.append(((time.perf_counter() - t0) * 1000, status))
        time.sleep(0.01)
    conn.close()


def bench_uploads(engine: Path, gallery: Path) -> dict:
    """8 concurrent 40 MP uploads: /healthz latency meanwhile, and the server's RSS."""
    big = _png_40mp()
    body, headers = _multipart(big)
    server = Server(engine, gallery)
    try:
        server.request("POST", "/api/v1/query", json.dumps({"text": "warm up", "k": 1}).encode(),
                       {"Content-Type": "application/json"})
        rss_before = server.rss_mib()
        stop, lat, rss = threading.Event(), [], [rss_before]

        def sample():
            while not stop.is_set():
                rss.append(server.rss_mib())
                time.sleep(0.02)

        probe = threading.Thread(target=_probe_latency, args=(server, "/api/v1/healthz", stop, lat))
        sampler = threading.Thread(target=sample)
        answers: list = []
        uploads = [threading.Thread(target=lambda: answers.append(server.request("POST", "/api/v1/query/image", body,
                                                                                 headers)[0])) for _ in range(8)]
        probe.start()
        sampler.start()
        t0 = time.perf_counter()
        for t in uploads:
            t.start()
        for t in uploads:
            t.join()
        wall = time.perf_counter() - t0
        stop.set()
        probe.join()
        sampler.join()
    finally:
        server.stop()
    ms = [m for m, _ in lat]
    return {"case": "8 concurrent 40 MP PNG uploads", "upload_bytes": len(big), "wall_s": round(wall, 2),
            "answers": {str(s): answers.count(s) for s in sorted(set(answers))},
            "healthz_p50_ms": round(percentile(ms, 50), 2), "healthz_p99_ms": round(percentile(ms, 99), 2),
            "healthz_samples": len(ms), "rss_before_mib": round(rss_before, 1), "rss_peak_mib": round(max(rss), 1)}


def _search_latencies(server: Server, clients: int, count: int) -> list[float]:
    """`clients` threads, `count` text queries each on a keep-alive connection: every latency (ms)."""
    out: list[float] = []
    body = json.dumps({"text": "a woman in a red coat carrying a black backpack", "k": 10}).encode()

    def one():
        conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
        for _ in range(count):
            t0 = time.perf_counter()
            status, _ = server.request("POST", "/api/v1/query", body, {"Content-Type": "application/json"}, conn)
            out.append((time.perf_counter() - t0) * 1000 if status == 200 else float("inf"))
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _slow_connection(server: Server, kind: str, closed: list, give_up_s: float = 120.0) -> None:
    """One slow client, a byte a second: 'headers' never finishes its headers, 'upload' its body. Appends
    the seconds until the server closed the connection (or answered and closed it)."""
    s = socket.create_connection((server.host, server.port), timeout=600)
    t0 = time.monotonic()
    if kind == "headers":
        s.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    else:
        s.sendall(b"POST /api/v1/query/image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                  b"boundary=x\r\nContent-Length: 1000000\r\n\r\n")
    s.settimeout(1.0)
    try:
        while time.monotonic() - t0 < give_up_s:
            s.sendall(b"x")
            try:
                s.recv(65536)  # b"" (closed) or the 408: either way the server has let go
                break
            except socket.timeout:
                continue
    except OSError:  # reset by the server
        pass
    closed.append(time.monotonic() - t0)
    s.close()


def bench_slow(engine: Path, gallery: Path, header_s: float = 10.0, body_s: float = 30.0) -> dict:
    """200 slowloris connections + 20 uploads at 1 byte/s while 4 clients search, against the same 4 alone."""
    server = Server(engine, gallery, "--header-timeout", str(header_s), "--body-timeout", str(body_s))
    try:
        _search_latencies(server, 1, 5)
        alone = _search_latencies(server, 4, 50)
        fds_before = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        closed_h, closed_u = [], []
        slow = [threading.Thread(target=_slow_connection, args=(server, "headers", closed_h)) for _ in range(200)]
        slow += [threading.Thread(target=_slow_connection, args=(server, "upload", closed_u)) for _ in range(20)]
        for t in slow:
            t.start()
        time.sleep(1.0)
        fds_during = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        beside = _search_latencies(server, 4, 50)
        for t in slow:
            t.join(max(header_s, body_s) * 4)
        time.sleep(1.0)
        fds_after = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    finally:
        server.stop()
    p99_alone, p99_beside = percentile(alone, 99), percentile(beside, 99)
    return {"case": "200 slowloris + 20 uploads at 1 byte/s, 4 clients searching",
            "header_timeout_s": header_s, "body_timeout_s": body_s,
            "slow_headers_closed": len(closed_h), "slow_headers_closed_max_s": round(max(closed_h, default=0), 2),
            "slow_uploads_closed": len(closed_u), "slow_uploads_closed_max_s": round(max(closed_u, default=0), 2),
            "search_p50_alone_ms": round(percentile(alone, 50), 1), "search_p99_alone_ms": round(p99_alone, 1),
            "search_p50_beside_ms": round(percentile(beside, 50), 1), "search_p99_beside_ms": round(p99_beside, 1),
            "p99_ratio": round(p99_beside / p99_alone, 2), "open_fds_before": fds_before,
            "open_fds_during": fds_during, "open_fds_after": fds_after}


def build_root(root: Path, engine: Path, shards: int = 1000, rows: int = 24) -> float:
    """A sharded root of `shards` camera shards of `rows` random unit vectors each; seconds taken."""
    from sen_infer.gallery.catalogue import Catalogue, make_sharded
    from sen_infer.store import Row, VectorStore

    manifest = json.loads((engine / "manifest.json").read_text())
    dim, fingerprint = manifest["embed_dim"], manifest["fingerprint"]
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    make_sharded(root)
    cat = Catalogue(root)
    rng = np.random.default_rng(0)
    for s in range(shards):
        info = cat.shard_for(f"cam{s:04d}", "2023-11-14")
        cat.widen(info["no"], START, START + 86_399)
        store = VectorStore.open(root / info["path"], fingerprint, dim, create=True)
        v = rng.standard_normal((rows, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        store.add_embeddings(v, [Row(f"v{s}.mp4", f"cam{s:04d}", i, START + 3600 * i, (0, 0, 8, 16), i)
                                 for i in range(rows)])
        store.persist_index()
        store.close()
    return time.perf_counter() - t0


def bench_shards(engine: Path, shards: int = 1000) -> list[dict]:
    """One-camera and unfiltered text queries through the server on a root of `shards` shards."""
    root = WORK / f"root{shards}"
    build_s = build_root(root, engine, shards)
    server = Server(engine, root)
    out = []
    try:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
        for label, camera, n in (("one camera", "cam0421", 200), ("all cameras", None, 20)):
            body = {"text": "a man in a grey hoodie and blue jeans", "k": 10}
            if camera:
                body["camera"] = camera
            data = json.dumps(body).encode()
            client, reported = [], []
            for i in range(n + 3):
                t0 = time.perf_counter()
                status, raw = server.request("POST", "/api/v1/query", data, {"Content-Type": "application/json"}, conn)
                if i >= 3:  # the first ones open the shards
                    client.append((time.perf_counter() - t0) * 1000)
                    reported.append(json.loads(raw)["took_ms"])
                assert status == 200, raw
            out.append({"case": f"{shards} shards, {label}", "queries": n, "client_p50_ms": round(percentile(client, 50), 2),
                        "client_p99_ms": round(percentile(client, 99), 2),
                        "server_p50_ms": round(percentile(reported, 50), 2), "build_s": round(build_s, 1)})
        conn.close()
    finally:
        server.stop()
    return out


def main(argv=None) -> int:
    """Runs the chosen parts and writes benchmarks/results/serve_hostile.{json,md}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default=str(ROOT / "demo_out" / "engine"))
    p.add_argument("--gallery", default=None, help="default: ENGINE/gallery")
    p.add_argument("--only", choices=("uploads", "slow", "shards"), action="append")
    p.add_argument("--shards", type=int, default=1000)
    args = p.parse_args(argv)
    engine = Path(args.engine)
    gallery = Path(args.gallery) if args.gallery else engine / "gallery"
    WORK.mkdir(parents=True, exist_ok=True)
    parts = args.only or ["uploads", "slow", "shards"]
    results: dict = {"machine": report.machine_info()}
    if "uploads" in parts:
        results["uploads"] = bench_uploads(engine, gallery)
        print(json.dumps(results["uploads"]), flush=True)
    if "slow" in parts:
        results["slow"] = bench_slow(engine, gallery)
        print(json.dumps(results["slow"]), flush=True)
    if "shards" in parts:
        results["shards"] = bench_shards(engine, args.shards)
        print(json.dumps(results["shards"]), flush=True)
    out = ROOT / "benchmarks" / "results"
    old = json.loads((out / "serve_hostile.json").read_text()) if (out / "serve_hostile.json").exists() else {}
    merged = {**old, **results}
    (out / "serve_hostile.json").write_text(json.dumps(merged, indent=1) + "\n")
    lines = ["# The service under hostile clients (`python -m benchmarks.serve_hostile`)", ""]
    for name in ("uploads", "slow"):
        if name in merged:
            lines += [f"## {name}", "", "| measure | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in merged[name].items()] + [""]
    if "shards" in merged:
        lines += ["## shards", "", "| case | client p50 ms | client p99 ms | server p50 ms |", "|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['client_p50_ms']} | {r['client_p99_ms']} | {r['server_p50_ms']} |"
                  for r in merged["shards"]] + [""]
    (out / "serve_hostile.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
