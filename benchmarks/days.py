"""A month of a city: a sharded root of DAYS x CAMERAS camera-day shards, searched before and after `compact`
merges each day into a day graph.

    python -m benchmarks.days [--days 30] [--cameras 1000] [--rows 24] [--dim 512] [--queries 100]
                              [--work DIR] [--name days] [--engine ENGINE] [--cold-runs 5] [--drop-caches]
                              [--reuse | --rerun after cold serve catalogue]

Data: clustered unit vectors (2,000 centres shared by every camera, noise sigma 0.35), `--rows` per camera and
day, each row its own track, timestamps spread over its day. The root is built once under --work and reused.
Each phase runs in a fresh process (its resident memory and its cold start are its own):
- build: shards written as writers write them (routed, committed, index saved), two processes at once;
- before: the fan-out over camera-day shards: one camera on one day, and all cameras of ONE day (1,000
  shards; a month's unfiltered query is that times 30, and is extrapolated, not run);
- compact: every day, one after another: seconds per day and the process's peak resident memory;
- after: the first unfiltered query after opening (cold: it opens every day graph and the winners' shards),
  then, after one untimed pass over the queries, warm p50/p99 unfiltered, one camera on one day, one camera
  over the month; recall@10 of the unfiltered answers against an exact scan of every vector; resident
  memory per row once the queries ran (mapped day graphs count as they are paged in);
- cold: --cold-runs fresh processes' first unfiltered query, with the page cache as the run left it, and with
  --drop-caches (root) after emptying it before each: time and bytes read from the disk;
- with --engine (its own dimension and model): the same root built at the engine's size, queried by text in
  process (`Retriever.query`) and through `serve`, to give what the service adds.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks.report import results_dir, write
from benchmarks.timing import memory_per_row, resident_kb, summarise

START = 1_772_668_800.0  # 2026-03-05 00:00 UTC
DAY = 86_400.0
CENTRES, SPREAD = 2000, 0.35
FP = "d" * 64


def day_name(d: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(START + d * DAY))


def camera_name(c: int) -> str:
    return f"cam{c:04d}"


@functools.lru_cache(maxsize=2)
def _centres(dim: int) -> np.ndarray:
    centres = np.random.default_rng(1).standard_normal((CENTRES, dim), dtype=np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def shard_vectors(d: int, c: int, rows: int, dim: int) -> np.ndarray:
    """The unit vectors of camera c on day d (regenerated identically for the exact truth)."""
    centres = _centres(dim)
    rng = np.random.default_rng([d, c])
    x = centres[rng.integers(0, CENTRES, rows)] + rng.standard_normal((rows, dim), dtype=np.float32) * (SPREAD / np.sqrt(dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def queries(n: int, dim: int) -> np.ndarray:
    return np.concatenate([shard_vectors(10_000, i, 1, dim) for i in range(n)])


# ---- phases ------------------------------------------------------------------------------------------
def _build_days(args_days: list[int], root: str, cameras: int, rows: int, dim: int, fingerprint: str) -> int:
    from sen_infer.gallery.catalogue import Catalogue
    from sen_infer.store import Row, VectorStore

    cat = Catalogue(Path(root))
    made = 0
    for d in args_days:
        for c in range(cameras):
            info = cat.shard_for(camera_name(c), day_name(d))
            times = START + d * DAY + (np.arange(rows) + 0.5) * (DAY / rows)
            cat.widen(info["no"], float(times[0]), float(times[-1]))
            store = VectorStore.open(Path(root) / info["path"], fingerprint, dim)
            store.add_embeddings(shard_vectors(d, c, rows, dim), [
                Row(f"rec-{c}-{d}.mp4", camera_name(c), i, float(times[i]), (0, 0, 64, 128), i + 1) for i in range(rows)])
            store.persist_index()
            store.close()
            cat.touch(day_name(d))
            made += 1
    return made


def phase_build(a) -> dict:
    from sen_infer.gallery.catalogue import make_sharded

    root = Path(a.root)
    if root.exists():
        shutil.rmtree(root)
    make_sharded(root)
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        made = sum(pool.starmap(_build_days, [(list(range(w, a.days, 2)), str(root), a.cameras, a.rows, a.dim,
                                               a.fingerprint) for w in range(2)]))
    seconds = time.perf_counter() - t0
    disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return {"shards": made, "rows": made * a.rows, "build_s": seconds, "disk_bytes": disk}


def _gallery(a):
    from sen_infer.gallery.sharded import ShardedGallery

    encoders = SimpleNamespace(dim=a.dim, manifest=SimpleNamespace(fingerprint=a.fingerprint))
    return ShardedGallery(Path(a.root), encoders)


def _timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def phase_before(a) -> dict:
    g = _gallery(a)
    qs = queries(a.queries, a.dim)
    rng = np.random.default_rng(5)
    one = _timed(lambda i: g.nearest(qs[i], 10, camera=camera_name(int(rng.integers(a.cameras))),
                                     since=START + DAY * (i % a.days), until=START + DAY * (i % a.days) + DAY - 1),
                 a.queries)
    day = (START, START + DAY - 1)
    cold = _timed(lambda i: g.nearest(qs[i], 10, since=day[0], until=day[1]), 1)
    warm = _timed(lambda i: g.nearest(qs[i], 10, since=day[0], until=day[1]), 5)
    return {"one_camera_one_day": summarise(one), "one_day_all_cameras_cold_ms": cold[0],
            "one_day_all_cameras_warm": summarise(warm), "shards_in_one_day": len(g.last_searched)}


def phase_compact(a) -> dict:
    g = _gallery(a)
    done = g.compact(closed_after=0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    secs = [d["seconds"] for d in done if d["status"] == "built"]
    return {"days_built": len(secs), "compact_s_per_day": summarise([s * 1000 for s in secs]) if secs else None,
            "compact_total_s": sum(secs), "compact_peak_rss_mb": peak_kb / 1024}


def phase_after(a) -> dict:
    qs = queries(a.queries, a.dim)
    import sen_infer.gallery.sharded  # noqa: F401  (the modules are loaded before the clock starts)

    before = resident_kb()
    t0 = time.perf_counter()
    g = _gallery(a)
    first = g.nearest(qs[0], 10, per_track=False)
    hits = {0: first}
    cold_ms = (time.perf_counter() - t0) * 1000
    after_open = resident_kb()
    graphs = len(g.last_graphs)
    for q in qs:  # one untimed pass: the graphs' mapped pages faulted in (at 10M rows, 12 GB), so warm is warm
        g.nearest(q, 10, per_track=False)
    warm = _timed(lambda i: hits.__setitem__(i, g.nearest(qs[i], 10, per_track=False)), a.queries)
    rng = np.random.default_rng(6)
    one = _timed(lambda i: g.nearest(qs[i], 10, camera=camera_name(int(rng.integers(a.cameras))),
                                     since=START + DAY * (i % a.days), until=START + DAY * (i % a.days) + DAY - 1),
                 a.queries)
    month = _timed(lambda i: g.nearest(qs[i], 10, camera=camera_name(int(rng.integers(a.cameras)))), a.queries)
    rows_ms = _timed(lambda i: g.search(qs[i], 10, per_track=False), a.queries)  # nearest + the winners' rows
    final = resident_kb()
    return {"graphs_searched": graphs, "cold_first_query_ms": cold_ms, "unfiltered": summarise(warm),
            "unfiltered_with_rows": summarise(rows_ms), "one_camera_one_day": summarise(one),
            "one_camera_month": summarise(month), "recall@10": recall(a, qs, [hits[i] for i in range(a.queries)]),
            "rss_kb": {"before_open": before, "after_open": after_open, "after_queries": final},
            **memory_per_row(before, final, a.days * a.cameras * a.rows)}


def recall(a, qs: np.ndarray, found: list) -> float:
    """recall@10 of `found` against an exact float32 scan of every vector (float16-rounded, as stored)."""
    from sen_infer.gallery.catalogue import Catalogue

    cat = Catalogue(Path(a.root))
    nos = {(s["camera"], s["day"]): s["no"] for s in cat.shards()}
    best = [[] for _ in qs]
    scores, keys = [], []
    for d in range(a.days):
        for c in range(a.cameras):
            v = shard_vectors(d, c, a.rows, a.dim).astype(np.float16).astype(np.float32)
            scores.append(v @ qs.T)
            keys.append([cat.keys.join(nos[(camera_name(c), day_name(d))], r + 1) for r in range(a.rows)])
        s, k = np.concatenate(scores), np.concatenate(keys)
        top = np.argsort(-s, axis=0)[:10]  # per query, this day's best 10
        best = [b + [(float(s[r, qi]), int(k[r])) for r in top[:, qi]] for qi, b in enumerate(best)]
        scores, keys = [], []
    truth = [{key for _, key in sorted(b, reverse=True)[:10]} for b in best]
    return float(np.mean([len(truth[i] & {k for k, _ in found[i]}) / 10 for i in range(len(qs))]))


def phase_catalogue(a) -> dict:
    """What the catalogue costs at this root's size: routing a recording (`Catalogue.route`: its content
    looked up by primary key, its (camera, day) shard found or made, its span widened, its day's counter
    raised, in one transaction; and per recording when a job's 100 are routed in one transaction,
    `route_many`), a search's plan
    (unfiltered, and one camera), and reading every entry (what the catalogue cost per read before)."""
    from sen_infer.gallery.catalogue import Catalogue

    cat = Catalogue(Path(a.root))

    def route(i):  # what `ShardedGallery.route` asks of the catalogue, for a day after the month
        t = START + a.days * DAY + i
        cat.route(f"{i:040x}", camera_name(i % a.cameras), day_name(a.days), t, t + 600)

    routed = _timed(route, 200)
    batch = 100  # a job's recordings, routed by the cluster driver in one transaction (`route_many`)

    def route_batch(i):
        t = START + a.days * DAY + 10_000 + i * batch
        cat.route_many([(f"{10_000 + i * batch + j:040x}", camera_name((i * batch + j) % a.cameras),
                         day_name(a.days), t + j, t + j + 600) for j in range(batch)])

    per_recording = [ms / batch for ms in _timed(route_batch, 20)]
    plan_all = _timed(lambda i: cat.plan(), 100)
    plan_one = _timed(lambda i: cat.plan({camera_name(i % a.cameras)}), 100)
    scan = _timed(lambda i: cat.shards(), 20)
    entries = len(cat.shards())
    for s in cat.on_day(day_name(a.days)):  # the routed entries hold nothing (no writer ran): removed
        cat.forget(s["no"])
    return {"entries": entries, "route": summarise(routed), f"route_many_{batch}_per_recording": summarise(per_recording),
            "plan_unfiltered": summarise(plan_all),
            "plan_one_camera": summarise(plan_one), "read_every_entry": summarise(scan)}


def _read_bytes() -> int:
    """Bytes this process has had read from the disk so far (Linux /proc/self/io; 0 where there is none)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def phase_cold(a) -> dict:
    """The first unfiltered query of a fresh process: its time and the bytes it had read from the disk."""
    qs = queries(1, a.dim)
    import sen_infer.gallery.sharded  # noqa: F401  (the modules are loaded before the clock starts)

    before = _read_bytes()
    t0 = time.perf_counter()
    _gallery(a).nearest(qs[0], 10, per_track=False)
    return {"ms": (time.perf_counter() - t0) * 1000, "disk_read_mb": (_read_bytes() - before) / 1e6}


def drop_page_cache() -> bool:
    """Empty the OS page cache (Linux, root only); False where it cannot."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cold_runs(a) -> dict:
    """--cold-runs fresh processes' first queries as the page cache was left, then with --drop-caches as many
    after emptying it (root only; it slows everything else on the machine for a while): the spread is what a
    first query can cost on this disk."""
    out = {"page_cache_as_left": [run_phase("cold", a, quiet=True) for _ in range(a.cold_runs)]}
    dropped = []
    for _ in range(a.cold_runs if a.drop_caches else 0):
        if not drop_page_cache():
            print("  cannot empty the page cache (not root): the dropped-cache runs are skipped", file=sys.stderr)
            break
        dropped.append(run_phase("cold", a, quiet=True))
    out["page_cache_dropped"] = dropped
    try:
        out["read_ahead_kb"] = {p.parent.parent.name: int(p.read_text()) for p in Path("/sys/block").glob("*/queue/read_ahead_kb")}
    except (OSError, ValueError):
        pass
    return out


def phase_serve(a) -> dict:
    """Text queries with --engine: `Retriever.query` in process, then the same through `serve` (one server,
    one kept-alive connection); the service's own cost is the difference of the p50s."""
    from benchmarks.serve import percentile
    from benchmarks.serve_hostile import Server
    from sen_infer import Retriever

    text = "a man in a grey hoodie and blue jeans"
    cases = {"one camera, one day": {"camera": camera_name(421), "since": START + DAY, "until": START + 2 * DAY - 1},
             f"all cameras, {a.days} days": {}}
    local = Retriever(a.engine, gallery=a.root)
    in_process = {}
    for label, kw in cases.items():
        in_process[label] = [t for i, t in enumerate(_timed(lambda i: local.query(text, k=10, **kw), 53)) if i >= 3]
    del local  # the in-process gallery is let go before the server opens the same root
    server = Server(Path(a.engine), Path(a.root))
    out = {}
    try:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=600)
        for label, kw in cases.items():
            body = json.dumps({"text": text, "k": 10, **kw}).encode()

            def ask(i):
                status, raw = server.request("POST", "/api/v1/query", body, {"Content-Type": "application/json"}, conn)
                assert status == 200, raw

            client = [t for i, t in enumerate(_timed(ask, 53)) if i >= 3]  # the first ones open the graphs
            out[label] = {"in_process": summarise(in_process[label]), "through_serve": summarise(client),
                          "service_adds_p50_ms": percentile(client, 50) - percentile(in_process[label], 50)}
        conn.close()
    finally:
        server.stop()
    return out


RERUNNABLE = ("after", "cold", "serve", "catalogue")  # the phases that leave the root as they found it
PHASES = {"build": phase_build, "before": phase_before, "compact": phase_compact, "after": phase_after,
          "catalogue": phase_catalogue, "cold": phase_cold, "serve": phase_serve}


def run_phase(name: str, a, quiet: bool = False) -> dict:
    """One phase in a fresh process; its JSON result."""
    argv = [sys.executable, "-m", "benchmarks.days", "--phase", name, "--root", a.root, "--days", str(a.days),
            "--cameras", str(a.cameras), "--rows", str(a.rows), "--dim", str(a.dim), "--queries", str(a.queries),
            "--fingerprint", a.fingerprint, *(["--engine", a.engine] if a.engine else [])]
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{r.stderr[-3000:]}")
    if not quiet:
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--work", default="/tmp/sen_days")
    ap.add_argument("--name", default="days")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--fingerprint", default=FP, help=argparse.SUPPRESS)
    ap.add_argument("--engine", help="an engine dir: the root is built at its size and fingerprint, and text "
                    "queries are timed in process and through `serve`")
    ap.add_argument("--reuse", action="store_true", help="reuse a root already built under --work")
    ap.add_argument("--drop-caches", action="store_true", help="also time first queries after emptying the OS "
                    "page cache (root only; the whole machine's cache)")
    ap.add_argument("--rerun", nargs="+", choices=RERUNNABLE, metavar="PHASE", help="on the root of an earlier "
                    f"full run (--work, same sizes): only these phases anew ({', '.join(RERUNNABLE)}), merged into "
                    "that run's results")
    ap.add_argument("--cold-runs", type=int, default=5, help="fresh processes timed on their first query, as the "
                    "page cache was left and (as root) after emptying it")
    a = ap.parse_args(argv)
    if a.phase:
        print(json.dumps(PHASES[a.phase](a)))
        return 0
    if a.engine:  # the root takes the engine's size and fingerprint (its vectors stay synthetic)
        manifest = json.loads(Path(a.engine, "manifest.json").read_text())
        a.dim, a.fingerprint = int(manifest["embed_dim"]), manifest["fingerprint"]
    a.root = str(Path(a.work) / f"root_{a.days}x{a.cameras}x{a.rows}x{a.dim}{'_' + a.fingerprint[:8] if a.engine else ''}")
    os.makedirs(a.work, exist_ok=True)
    if a.rerun:  # the root and the other figures of an earlier full run; only the phases named anew
        figures = {k: v for k, v in json.loads((results_dir() / f"{a.name}.json").read_text()).items()
                   if k not in ("benchmark", "machine", "rows", "note")}
    else:
        figures = {"days": a.days, "cameras": a.cameras, "rows_per_shard": a.rows, "dim": a.dim}
        if not (a.reuse and Path(a.root, "catalogue.sqlite").is_file()):
            figures["build"] = run_phase("build", a)
        figures["before"] = run_phase("before", a)
        figures["compact"] = run_phase("compact", a)
    wanted = set(a.rerun or RERUNNABLE)
    if "after" in wanted:
        figures["after"] = run_phase("after", a)
    if "cold" in wanted:
        figures["cold"] = cold = cold_runs(a)
        print(f"  cold: {len(cold['page_cache_as_left'])} + {len(cold['page_cache_dropped'])} runs", file=sys.stderr)
    if a.engine and "serve" in wanted:
        figures["serve"] = run_phase("serve", a)
    if "catalogue" in wanted:
        figures["catalogue"] = run_phase("catalogue", a)  # last: it adds a day of shards after the month
    write_report(a, figures)
    return 0


def write_report(a, figures: dict) -> None:
    """The results table of a run's figures (benchmarks/results/NAME.{json,md})."""
    cold = figures["cold"]
    b, f = figures["before"], figures["after"]
    rows = [
        {"case": "one camera, one day", "before_p50_ms": b["one_camera_one_day"]["p50_ms"],
         "after_p50_ms": f["one_camera_one_day"]["p50_ms"], "after_p99_ms": f["one_camera_one_day"]["p99_ms"]},
        {"case": "all cameras, one day (warm)", "before_p50_ms": b["one_day_all_cameras_warm"]["p50_ms"],
         "after_p50_ms": None, "after_p99_ms": None},
        {"case": f"all cameras, {a.days} days (warm)", "before_p50_ms": b["one_day_all_cameras_warm"]["p50_ms"] * a.days,
         "after_p50_ms": f["unfiltered"]["p50_ms"], "after_p99_ms": f["unfiltered"]["p99_ms"]},
        {"case": f"all cameras, {a.days} days, with rows", "before_p50_ms": None,
         "after_p50_ms": f["unfiltered_with_rows"]["p50_ms"], "after_p99_ms": f["unfiltered_with_rows"]["p99_ms"]},
        {"case": "first query after open (cold)", "before_p50_ms": b["one_day_all_cameras_cold_ms"] * a.days,
         "after_p50_ms": f["cold_first_query_ms"], "after_p99_ms": None},
        *[{"case": f"first query, {len(runs)} fresh processes, page cache {how} (median; max as p99)",
           "before_p50_ms": None, "after_p50_ms": float(np.median([r["ms"] for r in runs])),
           "after_p99_ms": max(r["ms"] for r in runs)}
          for how, runs in (("as left", cold["page_cache_as_left"]), ("dropped", cold["page_cache_dropped"])) if runs],
        {"case": f"one camera, {a.days} days", "before_p50_ms": None,
         "after_p50_ms": f["one_camera_month"]["p50_ms"], "after_p99_ms": f["one_camera_month"]["p99_ms"]},
        *[row for label, r in figures.get("serve", {}).items() for row in (
            {"case": f"text query in process ({Path(a.engine or '').name}): {label}", "before_p50_ms": None,
             "after_p50_ms": r["in_process"]["p50_ms"], "after_p99_ms": r["in_process"]["p99_ms"]},
            {"case": f"text query through serve: {label} (adds {r['service_adds_p50_ms']:.2f} ms at p50)",
             "before_p50_ms": None, "after_p50_ms": r["through_serve"]["p50_ms"],
             "after_p99_ms": r["through_serve"]["p99_ms"]})],
    ]
    figures["note"] = (f"'before' for {a.days} days is the one-day figure times {a.days} (not run: "
                       f"{a.days * b['shards_in_one_day']:,} shards); recall@10 after: {f['recall@10']:.3f}"
                       + (f"; resident memory after the queries: {f['resident_bytes_per_row']:.0f} bytes per row "
                          f"({f['anon_bytes_per_row']:.0f} of them copied, the rest mapped files)"
                          if "resident_bytes_per_row" in f else ""))
    write(a.name, figures, rows, ["case", "before_p50_ms", "after_p50_ms", "after_p99_ms"])
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    sys.exit(main())
