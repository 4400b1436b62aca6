"""Searches through nginx against the same server reached directly, in one run. The proxied path adds
TLS and one more hop. The goal: through the proxy, at least 0.8x of the direct throughput.

    python -m benchmarks.proxy                      # after `make demo`, with nginx installed; about 1 minute
    python -m benchmarks.proxy --clients 4 --count 25 --rounds 2

One server (`python -m sen_infer serve` with keys and `--trusted-proxy 127.0.0.1`, as docs/serve.md
says to run it behind a proxy) is measured directly and through nginx running docs/nginx.conf itself
(tests/nginx_proxy.py). N client threads, each on its own keep-alive connection, each send a fixed number
of POST /api/v1/query. The two modes alternate for several rounds (direct first, then proxied first), so
a machine's background load falls on both alike.

nginx runs as one process, and it, the server and the clients share this machine's cores. The figures
are what one box does with all three on it.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from benchmarks import report
from tests.nginx_proxy import nginx_binary, nginx_proxy, self_signed
from benchmarks.serve import load_queries, percentile

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work" / "proxy"
GOAL = 0.8  # proxied throughput / direct throughput


def query_call(base: str, key: str, k: int, tls: ssl.SSLContext | None):
    """A `call(text, state) -> True or an error line`: POST /api/v1/query on the thread's keep-alive connection
    (https through nginx, verified against the throwaway certificate, or http straight to the server)."""
    u = urllib.parse.urlsplit(base)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def call(text: str, state: dict):
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = (http.client.HTTPSConnection(u.hostname, u.port, context=tls, timeout=120)
                                    if u.scheme == "https" else http.client.HTTPConnection(u.hostname, u.port,
                                                                                           timeout=120))
        conn.request("POST", "/api/v1/query", body=json.dumps({"text": text, "k": k}), headers=headers)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            return f"HTTP {r.status}: {body[:200]!r}"
        return isinstance(json.loads(body).get("hits"), list) or "no hits list"
    return call


def fixed_count(clients: int, count: int, call, queries: list[str]) -> dict:
    """`clients` threads each making `count` calls back to back: wall time, latencies, errors."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors, samples = [0] * clients, []
    start = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        texts = itertools.cycle(queries[i % len(queries):] + queries[: i % len(queries)])
        state: dict = {}
        start.wait()
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                ok = call(next(texts), state)
            except Exception as e:  # a dropped connection is an error, counted; the next call reconnects
                ok, state = f"{type(e).__name__}: {e}", {}
            if ok is True:
                latencies[i].append((time.perf_counter() - t0) * 1000)
            else:
                errors[i] += 1
                if len(samples) < 5:
                    samples.append(str(ok))
        conn = state.get("conn")
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    return {"seconds": wall, "latencies": [x for per in latencies for x in per], "errors": sum(errors),
            "error_samples": samples}


def summary(mode: str, runs: list[dict], clients: int) -> dict:
    """One mode's figures over all its rounds."""
    done = [x for r in runs for x in r["latencies"]]
    seconds = sum(r["seconds"] for r in runs)
    return {"mode": mode, "clients": clients, "rounds": len(runs), "requests": len(done),
            "errors": sum(r["errors"] for r in runs), "seconds": round(seconds, 2),
            "queries_per_s": len(done) / seconds if seconds else 0.0,
            "per_round_qps": [round(len(r["latencies"]) / r["seconds"], 1) for r in runs],
            "p50_ms": percentile(done, 50), "p99_ms": percentile(done, 99),
            "mean_ms": statistics.fmean(done) if done else float("nan"),
            "error_samples": [s for r in runs for s in r["error_samples"]][:5]}


def viewer_key(keyfile: Path) -> str:
    """A fresh key file with one viewer key; returns the key."""
    keyfile.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "sen_infer", "keys", "add", "bench", "--role", "viewer",
                           "--file", str(keyfile)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"could not make a key: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1].strip()


def measure(args, engine: Path, gallery: Path, work: Path) -> tuple[list[dict], dict]:
    """Both modes, alternating for `args.rounds` rounds: (one summary row per mode, run facts)."""
    from sen_infer.serve.launch import served

    load_before = os.getloadavg()[0]
    key = viewer_key(work / "keys.json")
    cert, tls_key = self_signed(work / "tls")
    tls = ssl.create_default_context(cafile=str(cert))
    queries = load_queries(Path(args.data))
    runs: dict[str, list[dict]] = {"direct": [], "through nginx": []}
    with served(engine, gallery=gallery, keys=work / "keys.json", cwd=ROOT,
                extra_args=["--audit", str(work / "audit.jsonl"), "--trusted-proxy", "127.0.0.1"]) as direct:
        with nginx_proxy(direct, work / "nginx", cert, tls_key) as proxied:
            calls = {"direct": query_call(direct, key, args.k, None),
                     "through nginx": query_call(proxied, key, args.k, tls)}
            for name, call in calls.items():  # warm: the model, the connection paths, nginx's upstream pool
                fixed_count(args.clients, 2, call, queries)
            for r in range(args.rounds):
                order = list(calls) if r % 2 == 0 else list(reversed(calls))
                for name in order:
                    runs[name].append(fixed_count(args.clients, args.count, calls[name], queries))
                    print(f"round {r + 1}: {name}: {len(runs[name][-1]['latencies'])} queries in "
                          f"{runs[name][-1]['seconds']:.2f} s, {runs[name][-1]['errors']} errors", flush=True)
    rows = [summary(name, got, args.clients) for name, got in runs.items()]
    facts = {"queries": len(queries), "load_average_1min_before": load_before,
             "load_average_1min_after": os.getloadavg()[0],
             "nginx": _nginx_version()}
    return rows, facts


def _nginx_version() -> str:
    done = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, timeout=30)
    return (done.stderr or done.stdout).strip().split(":", 1)[-1].strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="demo_out/engine")
    ap.add_argument("--gallery", help="gallery to serve (default: ENGINE/gallery; only read)")
    ap.add_argument("--data", default="demo_out/synthpedes",
                    help="SynthPEDES folder whose test captions are the queries")
    ap.add_argument("--clients", type=int, default=8, help="client threads, one keep-alive connection each")
    ap.add_argument("--count", type=int, default=100, help="queries per client per round")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per mode, the modes alternating")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--work", default=str(WORK))
    args = ap.parse_args(argv)
    if nginx_binary() is None:
        raise SystemExit("no nginx binary: apt-get install nginx-light (make test installs it where it can)")
    engine = Path(args.engine)
    gallery = Path(args.gallery) if args.gallery else engine / "gallery"
    if not (gallery / "gallery.sqlite").is_file():
        raise SystemExit(f"no gallery at {gallery}: run `make demo` first, or pass --engine/--gallery")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows, facts = measure(args, engine, gallery, work)
    by = {row["mode"]: row for row in rows}
    ratio = by["through nginx"]["queries_per_s"] / by["direct"]["queries_per_s"]
    for row in rows:
        row["vs_direct"] = row["queries_per_s"] / by["direct"]["queries_per_s"]
    figures = {"clients": args.clients, "count_per_client_per_round": args.count, "rounds": args.rounds,
               "k": args.k, "ratio": ratio, "goal": GOAL, "meets_goal": ratio >= GOAL,
               "errors_total": sum(row["errors"] for row in rows), **facts}
    report.write("proxy", figures, rows, ["mode", "clients", "requests", "queries_per_s", "vs_direct", "p50_ms",
                                          "p99_ms", "errors", "per_round_qps"])
    print(f"direct {by['direct']['queries_per_s']:.1f} q/s, through nginx {by['through nginx']['queries_per_s']:.1f}"
          f" q/s: ratio {ratio:.2f} (goal {GOAL}); errors {figures['errors_total']}; "
          f"written benchmarks/results/proxy.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
