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


async def _slow_client(host: str, port: int, kind: str, give_up_s: float) -> float:
    """One slow client, a byte a second: 'headers' never finishes its headers, 'upload' its body. Returns
    the seconds until the server closed the connection (or answered and closed it)."""
    import asyncio

    reader, writer = await asyncio.open_connection(host, port)
    t0 = time.monotonic()
    if kind == "headers":
        writer.write(b"GET /api/v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    else:
        writer.write(b"POST /api/v1/query/image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                     b"boundary=x\r\nContent-Length: 1000000\r\n\r\n--x\r\nContent-Disposition: form-data; "
                     b'name="image"; filename="slow.jpg"\r\n\r\n')
    try:
        while time.monotonic() - t0 < give_up_s:
            writer.write(b"x")
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(65536), 1.0)  # b"" (closed) or the 408: the server let go
                break
            except asyncio.TimeoutError:
                continue
    except OSError:  # reset by the server
        pass
    writer.close()
    return time.monotonic() - t0


def _slow_process(host: str, port: int, headers: int, uploads: int, out) -> None:
    """The slow clients, in a process of their own (so they take no GIL from the measuring clients):
    puts (kind, seconds until closed) for each on `out`."""
    import asyncio

    async def all_of_them():
        kinds = ["headers"] * headers + ["upload"] * uploads
        times = await asyncio.gather(*(_slow_client(host, port, k, 120.0) for k in kinds))
        return list(zip(kinds, times))

    out.put(asyncio.run(all_of_them()))


def bench_slow(engine: Path, gallery: Path, header_s: float = 10.0, body_s: float = 30.0) -> dict:
    """200 slowloris connections + 20 uploads at 1 byte/s (another process) while 4 clients search, against
    the same 4 clients alone, in one run."""
    import multiprocessing

    server = Server(engine, gallery, "--header-timeout", str(header_s), "--body-timeout", str(body_s))
    try:
        _search_latencies(server, 1, 5)
        alone = _search_latencies(server, 4, 100)
        fds_before = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        out = multiprocessing.get_context("spawn").Queue()
        slow = multiprocessing.get_context("spawn").Process(target=_slow_process,
                                                            args=(server.host, server.port, 200, 20, out))
        slow.start()
        time.sleep(2.0)  # the slow connections are open
        fds_during = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        beside = _search_latencies(server, 4, 100)
        closed = out.get(timeout=max(header_s, body_s) * 10)
        slow.join(60)
        time.sleep(1.0)
        fds_after = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    finally:
        server.stop()
    closed_h = [t for k, t in closed if k == "headers"]
    closed_u = [t for k, t in closed if k == "upload"]
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
    """One-camera and unfiltered text queries through the server on a root of `shards` camera shards of one
    day: as built, then after `compact` merged the day into a day graph. Beside each, the same query in
    process (`Retriever.query`), so the service's own cost is the difference."""
    root = WORK / f"root{shards}"
    build_s = build_root(root, engine, shards)
    out = _shard_cases(engine, root, f"{shards} shards", build_s)
    done = subprocess.run([sys.executable, "-m", "sen_infer", "compact", "--engine", str(engine), "--gallery",
                           str(root), "--day", "2023-11-14", "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out + _shard_cases(engine, root, f"{shards} shards compacted into a day graph", build_s)


def _shard_cases(engine: Path, root: Path, what: str, build_s: float) -> list[dict]:
    from sen_infer import Retriever

    text = "a man in a grey hoodie and blue jeans"
    cases = (("one camera", "cam0421", 200), ("all cameras", None, 20))
    local = Retriever(engine, gallery=root)
    in_process = {}
    for label, camera, n in cases:
        ms = []
        for i in range(n + 3):
            t0 = time.perf_counter()
            local.query(text, k=10, camera=camera)
            if i >= 3:
                ms.append((time.perf_counter() - t0) * 1000)
        in_process[label] = percentile(ms, 50)
    server = Server(engine, root)
    out = []
    try:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
        for label, camera, n in cases:
            body = {"text": text, "k": 10}
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
            out.append({"case": f"{what}, {label}", "queries": n, "client_p50_ms": round(percentile(client, 50), 2),
                        "client_p99_ms": round(percentile(client, 99), 2),
                        "server_p50_ms": round(percentile(reported, 50), 2),
                        "in_process_p50_ms": round(in_process[label], 2),
                        "service_adds_p50_ms": round(percentile(client, 50) - in_process[label], 2),
                        "build_s": round(build_s, 1)})
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
        lines += ["## shards", "", "| case | client p50 ms | client p99 ms | server p50 ms | in process p50 ms | "
                  "service adds p50 ms |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['client_p50_ms']} | {r['client_p99_ms']} | {r['server_p50_ms']} | "
                  f"{r.get('in_process_p50_ms', '')} | {r.get('service_adds_p50_ms', '')} |"
                  for r in merged["shards"]] + [""]
    (out / "serve_hostile.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
