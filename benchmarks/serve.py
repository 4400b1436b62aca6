"""The search service under load: 1, 8 and 32 concurrent clients for a fixed time each, against the real
server (`python -m sen_infer serve`) on a copy of the demo's gallery, with the same queries through the
in-process SDK in the same run, so the server's cost is a ratio; then again while a second process
ingests video into the gallery the server is serving. Counts errors (goal 0) and rows lost (goal 0:
every row the ingest committed is in the gallery and served).

    python -m benchmarks.serve                      # after `make demo`; about 5 minutes
    python -m benchmarks.serve --seconds 10 --clients 1 4

Clients are threads with one keep-alive HTTP connection each, in this process; on a small machine they
take CPU from the server, and the ingest takes CPU from both: the figures say what one box does with all
three on it (the machine and its load average are recorded).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "serve"
FALLBACK_QUERIES = [
    "a woman in a red coat carrying a black backpack", "a man in a grey hoodie and blue jeans",
    "a person in a white shirt and black trousers", "a man wearing a green t-shirt and a red cap",
    "a woman with long hair in a yellow dress", "a man in a dark jacket carrying a bag",
]


def load_queries(data_dir: Path, n: int = 200) -> list[str]:
    """Test-split captions of the demo's SynthPEDES (what an operator would type), else a fixed list."""
    try:
        entries = json.loads((data_dir / "reid_raw.json").read_text())
    except (OSError, json.JSONDecodeError):
        return FALLBACK_QUERIES
    texts = [c for e in entries if e.get("split") == "test" for c in e.get("captions", [])]
    return texts[:n] or FALLBACK_QUERIES


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def drive(clients: int, seconds: float, call) -> dict:
    """`clients` threads calling `call(text) -> ok` back to back for `seconds`: throughput, latency, errors."""
    queries = load_queries.cache
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    samples: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        texts = itertools.cycle(queries[i % len(queries):] + queries[: i % len(queries)])
        state: dict = {}
        start.wait()
        first = True  # every client makes one call, however late a loaded machine schedules its thread
        while first or time.perf_counter() < stop_at[0]:
            first = False
            t0 = time.perf_counter()
            try:
                ok = call(next(texts), state)
            except Exception as e:  # a refused or dropped connection is an error, counted, not fatal
                ok, state = False, {}
                if len(samples) < 5:
                    samples.append(f"{type(e).__name__}: {e}")
            if ok is True:
                latencies[i].append((time.perf_counter() - t0) * 1000)
            else:
                errors[i] += 1
                if isinstance(ok, str) and len(samples) < 5:
                    samples.append(ok)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(seconds + 120)
    wall = time.perf_counter() - t0
    done = [x for per in latencies for x in per]
    return {"clients": clients, "seconds": round(wall, 1), "requests": len(done), "errors": sum(errors),
            "requests_per_s": len(done) / wall, "p50_ms": percentile(done, 50), "p99_ms": percentile(done, 99),
            "mean_ms": statistics.fmean(done) if done else float("nan"), "error_samples": samples,
            "load_average_1min": os.getloadavg()[0]}


def http_query(base: str, k: int):
    """A `call` for `drive`: POST /api/v1/query on the thread's own keep-alive connection."""
    u = urllib.parse.urlsplit(base)

    def call(text: str, state: dict):
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        conn.request("POST", "/api/v1/query", body=json.dumps({"text": text, "k": k}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            return f"HTTP {r.status}: {body[:200]!r}"
        return isinstance(json.loads(body).get("hits"), list)
    return call


def get_json(base: str, path: str) -> dict:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def table_rows(gallery: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{gallery / 'gallery.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM crops").fetchone()[0]
    finally:
        conn.close()


# ---- the second process: ingest video until told to stop ---------------------------------------------
def ingest_worker(args) -> int:
    """Ingests copies of the demo's camera videos (each a new file, so each is new footage to the gallery)
    one after another until the stop file appears; writes what it committed to the report file."""
    from sen_infer import Retriever
    from sen_train.data.synth_video import new_footage

    r = Retriever(args.engine, gallery=args.gallery)
    videos = sorted(Path(args.video_dir).glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no .mp4 videos in {args.video_dir}")
    copies = Path(args.work) / "ingest"
    copies.mkdir(parents=True, exist_ok=True)
    added = files = 0
    t0 = time.perf_counter()
    for i in itertools.count():
        if Path(args.stop).exists():
            break
        src = videos[i % len(videos)]
        copy = new_footage(src, copies / f"run{i:04d}_{src.name}", i)
        rep = r.gallery.add_video(copy, camera=f"ingest-{src.stem}", start_time=1_800_000_000.0 + 60 * i)
        added += rep.added
        files += 1
        Path(args.report).write_text(json.dumps({"added": added, "videos": files,
                                                 "seconds": time.perf_counter() - t0}))
    return 0


# ---- the run ----------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="demo_out/engine")
    ap.add_argument("--gallery", help="gallery to copy and serve (default: ENGINE/gallery)")
    ap.add_argument("--data", default="demo_out/synthpedes", help="SynthPEDES folder whose test captions are the queries")
    ap.add_argument("--video-dir", default="demo_out/video", help="videos the second process ingests")
    ap.add_argument("--seconds", type=float, default=30.0, help="per concurrency level and mode")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--no-ingest", action="store_true", help="skip the run with a concurrent ingest")
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--ingest-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stop", help=argparse.SUPPRESS)
    ap.add_argument("--report", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ingest_worker:
        return ingest_worker(args)

    engine = Path(args.engine)
    source = Path(args.gallery) if args.gallery else engine / "gallery"
    if not (source / "gallery.sqlite").is_file():
        raise SystemExit(f"no gallery at {source}: run `make demo` first, or pass --engine/--gallery")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    gallery = work / "gallery"
    shutil.copytree(source, gallery, ignore=shutil.ignore_patterns("audit.jsonl"))
    load_queries.cache = load_queries(Path(args.data))
    print(f"{len(load_queries.cache)} queries; gallery {gallery} ({table_rows(gallery)} rows)", flush=True)

    from sen_infer import Retriever
    from sen_infer.serve.launch import served

    rows = []
    # the in-process SDK: the same queries, the same threads, no HTTP
    r = Retriever(engine, gallery=gallery)
    r.query(load_queries.cache[0], k=args.k)  # warm

    def sdk(text: str, state: dict):
        return isinstance(r.query(text, k=args.k), list)

    for c in args.clients:
        rows.append({"mode": "sdk (in process)", **drive(c, args.seconds, sdk)})
        print(rows[-1], flush=True)
    r.gallery.close()  # the server opens it next

    lost = None
    with served(engine, gallery=gallery, cwd=ROOT) as base:
        http_query(base, args.k)(load_queries.cache[0], {})  # warm
        for c in args.clients:
            rows.append({"mode": "server", **drive(c, args.seconds, http_query(base, args.k))})
            print(rows[-1], flush=True)
        if not args.no_ingest:
            before = get_json(base, "/api/v1/info")["rows"]
            stop, rep_file = work / "stop", work / "ingest.json"
            worker = subprocess.Popen([sys.executable, "-m", "benchmarks.serve", "--ingest-worker", "--engine",
                                       str(engine), "--gallery", str(gallery), "--video-dir", args.video_dir,
                                       "--work", str(work), "--stop", str(stop), "--report", str(rep_file)], cwd=ROOT)
            try:
                for c in args.clients:
                    rows.append({"mode": "server + ingest", **drive(c, args.seconds, http_query(base, args.k))})
                    print(rows[-1], flush=True)
            finally:
                # the ingest side must have committed a video, however slowly its process started (a
                # loaded machine): wait for its first report (bounded), then stop it
                deadline = time.monotonic() + 600
                while not rep_file.exists() and worker.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                stop.touch()
                worker.wait(600)
            ingest = json.loads(rep_file.read_text()) if rep_file.exists() else {"added": 0, "videos": 0}
            expected = before + ingest["added"]
            served_rows = get_json(base, "/api/v1/info")["rows"]
            stored = table_rows(gallery)
            lost = {"rows_before": before, "rows_committed_by_ingest": ingest["added"],
                    "videos_ingested": ingest["videos"], "ingest_exit_code": worker.returncode,
                    "rows_in_table": stored, "rows_served": served_rows,
                    "rows_lost": expected - min(stored, served_rows)}
            print(lost, flush=True)

    sdk_by = {row["clients"]: row for row in rows if row["mode"].startswith("sdk")}
    for row in rows:
        base_row = sdk_by.get(row["clients"])
        if base_row and not row["mode"].startswith("sdk") and base_row["requests_per_s"] > 0:
            row["throughput_vs_sdk"] = row["requests_per_s"] / base_row["requests_per_s"]
            row["p50_vs_sdk"] = row["p50_ms"] / base_row["p50_ms"]
        row["case"] = f"{row['mode']}, {row['clients']} client{'s' if row['clients'] > 1 else ''}"
    figures = {"queries": len(load_queries.cache), "k": args.k, "seconds_per_level": args.seconds,
               "gallery_rows": table_rows(gallery), "ingest": lost,
               "errors_total": sum(row["errors"] for row in rows)}
    report.write("serve", figures, rows, ["mode", "clients", "requests", "requests_per_s", "p50_ms", "p99_ms",
                                          "errors", "throughput_vs_sdk", "p50_vs_sdk", "load_average_1min"],
                 plot=("case", "requests_per_s"))
    print(f"written benchmarks/results/serve.* ; errors {figures['errors_total']}, rows lost "
          f"{lost['rows_lost'] if lost else 'n/a'}")
    return 0


load_queries.cache = FALLBACK_QUERIES

if __name__ == "__main__":
    sys.exit(main())
