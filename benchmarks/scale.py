"""The gallery at deployment size (a million rows and more), with FAISS beside it on the same vectors.

    python -m benchmarks.scale [--rows 1000000] [--dim 512] [--engine ENGINE ...] [--faiss] [--quick]
                               [--queries 1000] [--work DIR] [--name scale_1m]

Data: clustered unit vectors, the issue's harder set (2,000 centres, noise sigma 0.35; `benchmarks.index.
clustered`), `--queries` of them held out as queries; exact top-10 by a float32 scan. Past 2M rows the data
is written in chunks as float16 and scanned in chunks (`benchmarks.big_data`: 10M x 512 is 10 GB on disk).

Gallery (sen_infer.store.VectorStore with this checkout's defaults), each figure in a fresh process:
- build: rows/s of `add_embeddings` in transactions of 20,000 inside `bulk_import` (the graph built in RAM
  with usearch's batch add, saved once), the index save, bytes per row on disk;
- open: seconds to open with a valid saved index (memory-mapped), and after a crash that left 20,000
  committed rows out of the saved index (the process is killed between commit and save);
- memory: resident memory of the searching process per row, all included (RssAnon + RssFile after the
  queries, less the same process before opening the gallery);
- query: `search` k=10 p50/p99, one query at a time, unfiltered, one camera of 100 (1 % of rows), a time
  window (10 %); recall@10 of what the gallery returns against exact, before and after `tune_index`;
- with --engine: `Retriever.query` end to end (tokenise + text tower + search + rows) on a gallery of
  --rows at the engine's dimension and fingerprint.
FAISS (--faiss; `pip install faiss-cpu`, a benchmark-only dependency): HNSW32 and IVF-PQ on the same
vectors, 2 threads: build seconds, batch QPS, recall@10 and bytes per vector, against usearch's own
batch search of the gallery's index at the same settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.big_data import exact_topk_streamed, write_clustered
from benchmarks.index import clustered, exact_topk, recall
from benchmarks.report import write
from benchmarks.timing import memory_per_row, resident_kb, summarise

FP = "5" * 64
CAMERAS = 100
BATCH = 20_000


STREAMED = 2_000_000  # rows past which the data is written and scanned in chunks (benchmarks.big_data)


def _rows(start: int, stop: int, n: int):
    from sen_infer.store import Row

    # 100 cameras, one day of timestamps, 8 rows per track (video-like)
    return [Row(f"bench:{i // 5000}", f"cam{i % CAMERAS:03d}", i, 1_700_000_000 + 86_400 * i / n, (0, 0, 64, 128),
                i // 8) for i in range(start, stop)]


# ---- phases, each run in its own process ----------------------------------------------------------
def phase_build(args) -> dict:
    from sen_infer.store import VectorStore

    data = np.load(args.data, mmap_mode="r")
    n = len(data)
    store = VectorStore.open(args.gallery, args.fingerprint, data.shape[1])
    t0 = time.perf_counter()
    with store.bulk_import():  # one graph in RAM, usearch's batch add, saved once when the block ends
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            store.add_embeddings(np.asarray(data[start:stop]), _rows(start, stop, n))
            if start // BATCH % 10 == 0:
                print(f"  built {stop:,} rows, {stop / (time.perf_counter() - t0):,.0f} rows/s", file=sys.stderr,
                      flush=True)
        added = time.perf_counter() - t0
        t1 = time.perf_counter()
    saved = time.perf_counter() - t1
    files = {p.name: p.stat().st_size for p in Path(args.gallery).iterdir() if p.is_file()}
    return {"rows": n, "build_s": added + saved, "rows_per_s": n / (added + saved), "save_s": saved,
            "disk_bytes_per_row": sum(files.values()) / n, "files": files}


def phase_crash(args) -> dict:
    """Commit --extra rows and die before the index is saved (as a killed ingest does)."""
    from sen_infer.store import VectorStore

    data = np.load(args.data, mmap_mode="r")
    store = VectorStore.open(args.gallery, args.fingerprint, data.shape[1])
    n = len(store)
    extra = clustered(args.extra, data.shape[1], seed=7)
    store.add_embeddings(extra, _rows(n, n + args.extra, n + args.extra))
    print(json.dumps({"committed": args.extra}), flush=True)
    os._exit(0)  # no persist_index, no cleanup: the saved index lacks these rows


def phase_probe(args) -> dict:
    """Open time, memory, query latency and recall of the gallery as a searching process sees it."""
    from sen_infer.store import VectorStore

    data = np.load(args.data, mmap_mode="r")
    queries = np.load(args.queries)
    truth = np.load(args.truth)
    before = resident_kb()
    t0 = time.perf_counter()
    store = VectorStore.open(args.gallery, args.fingerprint, data.shape[1], create=False)
    open_s = time.perf_counter() - t0
    out = {"open_s": open_s, "opened": store.opened, "rows": len(store), "params": store.stats()["index"]["params"]}
    after_open = resident_kb()
    n = len(data)
    window = (1_700_000_000 + 86_400 * 0.45, 1_700_000_000 + 86_400 * 0.55)
    cases = {"unfiltered": {}, "camera (1 %)": {"camera": "cam042"},
             "time window (10 %)": {"since": window[0], "until": window[1]}}
    m = min(len(queries), args.latency_queries)
    for label, kw in cases.items():
        for q in queries[:5]:  # warm the mapped pages a first query would fault in
            store.search(q, 10, per_track=False, **kw)
        ms = []
        for q in queries[:m]:
            t = time.perf_counter()
            store.search(q, 10, per_track=False, **kw)
            ms.append((time.perf_counter() - t) * 1e3)
        out[f"search {label}"] = summarise(ms)
    # rows committed after the data (the crash phase's) are not in the exact truth: left out
    found = [[key - 1 for key, _ in store.nearest(q, 40, per_track=False) if key <= n][:10] for q in queries]
    out["recall@10"] = recall(found, truth) if len(truth) else None
    final = resident_kb()
    out["rss_kb"] = {"before_open": before, "after_open": after_open, "after_queries": final}
    out.update(memory_per_row(before, final, n))
    return out


def phase_tune(args) -> dict:
    from sen_infer.store import VectorStore

    data = np.load(args.data, mmap_mode="r")
    store = VectorStore.open(args.gallery, args.fingerprint, data.shape[1], create=False)
    t0 = time.perf_counter()
    report = store.tune_index(target=0.99)
    report["seconds"] = time.perf_counter() - t0
    return report


def phase_persist(args) -> dict:
    from sen_infer.store import VectorStore

    data = np.load(args.data, mmap_mode="r")
    store = VectorStore.open(args.gallery, args.fingerprint, data.shape[1], create=False)
    store.persist_index()
    return {"rows": len(store)}


def phase_e2e(args) -> dict:
    """`Retriever.query` end to end on the gallery (built with the engine's fingerprint)."""
    from benchmarks.e2e import QUERIES
    from sen_infer import Retriever

    t0 = time.perf_counter()
    r = Retriever(args.engine[-1], gallery=args.gallery)
    open_s = time.perf_counter() - t0
    out = {"open_s": open_s, "rows": len(r.gallery), "backend": getattr(r.encoders, "backend", None)}
    texts = [f"{q} {i}" for i in range(args.latency_queries // len(QUERIES) + 1) for q in QUERIES]
    for label, kw in {"unfiltered": {}, "camera (1 %)": {"camera": "cam042"}}.items():
        for t in texts[:3]:
            r.query(t, k=10, **kw)
        ms = []
        for t in texts[: args.latency_queries]:
            t1 = time.perf_counter()
            r.query(t, k=10, **kw)
            ms.append((time.perf_counter() - t1) * 1e3)
        out[f"query {label}"] = summarise(ms)
    return out


def phase_real(args) -> dict:
    """Recall of the graph on real embeddings: --real-n SynthPEDES crops embedded by the engine's image
    tower, searched with captions through its text tower (the modality gap included), the graph forced
    (exact_max=0) so that it, not the exact path small galleries take, is measured."""
    from sen_infer.engine.encoders import Encoders
    from sen_infer.store import Row, VectorStore
    from sen_train.data.captions import make_caption
    from sen_train.data.synth import SynthConfig, plan_identities, render_image

    enc = Encoders(args.engine[-1], backend="onnx-cpu")
    cfg = SynthConfig(ids=max(3, args.real_n // 4), images_per_id=4, seed=123)
    people = plan_identities(cfg)
    store = VectorStore.open(args.gallery, enc.manifest.fingerprint, enc.dim, exact_max=0, filtered_exact_max=0)
    t0 = time.perf_counter()
    for start in range(0, len(people), 256):
        imgs, rows = [], []
        for person in people[start : start + 256]:
            for k in range(4):
                imgs.append(render_image(person.attributes, cfg, person.pid, k)[0])
                rows.append(Row(f"synth:{person.pid}", f"cam{person.pid % CAMERAS:03d}", k, float(person.pid),
                                (0, 0, cfg.width, cfg.height), person.pid))
        store.add_embeddings(enc.encode_images(imgs), rows)
    store.persist_index()
    embed_s = time.perf_counter() - t0
    rng = np.random.default_rng(5)
    asked = [people[i] for i in rng.choice(len(people), min(300, len(people)), replace=False)]
    texts = [make_caption(p.attributes, "front", rng) for p in asked]
    queries = enc.encode_text(texts)
    from sen_infer.store.maintenance import exact_topk

    with store.lock:
        ids = store.columns.ids.copy()
    truth = exact_topk(store, ids, queries / np.linalg.norm(queries, axis=1, keepdims=True), 10)

    def measured() -> float:
        found = [[key for key, _ in store.nearest(q, 10, per_track=False)] for q in queries]
        return recall(found, truth)

    out = {"rows": len(store), "embed_s": embed_s, "recall@10 default": measured()}
    out["tune"] = store.tune_index(target=0.99, queries=queries)
    out["recall@10 tuned"] = measured()
    return out


PHASES = {"real": phase_real, "persist": phase_persist, "build": phase_build, "crash": phase_crash, "probe": phase_probe, "tune": phase_tune, "e2e": phase_e2e}


class quiet_machine:
    """With $SEN_BENCH_LOCK set (a lock file other heavy jobs on a shared machine also take with flock),
    hold it while timing, waiting at most `wait_s`; the load average is recorded with each result
    either way, so a figure measured under load says so."""

    def __init__(self, wait_s: float = 900.0):
        self.path, self.wait_s, self.file, self.locked = os.environ.get("SEN_BENCH_LOCK"), wait_s, None, False

    def __enter__(self):
        if self.path:
            import fcntl

            self.file = open(self.path, "a")
            deadline = time.monotonic() + self.wait_s
            while time.monotonic() < deadline:
                try:
                    fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self.locked = True
                    break
                except BlockingIOError:
                    time.sleep(2)
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()  # releases the lock


def run_phase(name: str, timed: bool = True, **kw) -> dict:
    """A phase in a fresh interpreter (open time and memory are a new process's), its JSON result back;
    `timed` phases run holding the machine (see quiet_machine)."""
    argv = [sys.executable, "-m", "benchmarks.scale", "--phase", name]
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    with quiet_machine() if timed else contextlib.nullcontext() as q:
        r = subprocess.run(argv, capture_output=True, text=True)
        load = os.getloadavg()[0]
    sys.stderr.write(r.stderr[-2000:])
    if r.returncode != 0:
        raise RuntimeError(f"phase {name} failed ({r.returncode}): {r.stderr[-500:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["load_average_1min"] = load
    if timed and q.path:
        out["held_machine"] = q.locked
    return out


# ---- FAISS and raw usearch, same vectors ------------------------------------------------------------
def batch_qps(search, queries: np.ndarray, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        search(queries)
        best = min(best, time.perf_counter() - t)
    return len(queries) / best


def faiss_rows(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, work: Path) -> list[dict]:
    import faiss

    faiss.omp_set_num_threads(2)
    n, dim = data.shape

    def measure(label: str, make, knob: str, values) -> list[dict]:
        """Build `make()` over the data in chunks, save it (its size), then batch QPS and recall@10 per
        value of the search knob."""
        t = time.perf_counter()
        index = make()
        for i in range(0, n, 100_000):
            index.add(np.ascontiguousarray(data[i : i + 100_000]))
        build = time.perf_counter() - t
        path = work / "faiss.index"
        faiss.write_index(index, str(path))
        size = path.stat().st_size
        path.unlink()
        out = []
        for value in values:
            faiss.ParameterSpace().set_index_parameter(index, knob, value)
            found = index.search(queries, 10)[1]
            out.append({"index": label, "setting": f"{knob} {value}", "build_s": build,
                        "qps": batch_qps(lambda q: index.search(q, 10), queries), "recall@10": recall(found, truth),
                        "bytes_per_vector": size / n})
        return out

    def hnsw():
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40  # FAISS's default
        return index

    nlist = 4096 if n >= 500_000 else max(64, int(4 * np.sqrt(n)))
    m = 64 if dim % 64 == 0 else max(d for d in (32, 16, 8, 4, 2, 1) if dim % d == 0)  # 8 dims per code at 512

    def ivfpq():
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = np.sort(np.random.default_rng(0).choice(n, min(n, 100 * nlist // 2), replace=False))
        index.train(np.ascontiguousarray(data[sample]))
        return index

    return (measure("FAISS HNSW32 flat f32", hnsw, "efSearch", (64, 128, 256))
            + measure(f"FAISS IVF{nlist}-PQ{m}x8", ivfpq, "nprobe", (16, 64, 256)))


def usearch_rows(gallery: Path, dim: int, queries: np.ndarray, truth: np.ndarray, build_s: float) -> list[dict]:
    """The gallery's own index file, mapped, searched in batches as FAISS is (keys are row ids = i + 1)."""
    from sen_infer.store.ann import IndexParams, TieredIndex
    from sen_infer.store import VectorStore

    store = VectorStore.open(gallery, FP, dim, create=False)
    params = store.index_params
    size = (gallery / "index.usearch").stat().st_size
    rows = []
    for ef in (64, 128, 256):
        ix = TieredIndex.view(gallery / "index.usearch", dim, IndexParams(params.connectivity, params.expansion_add, ef))
        base = ix.base

        def search(q, base=base):
            return base.search(q, 10, threads=2)

        found = np.asarray(search(queries).keys, np.int64) - 1
        rows.append({"index": f"usearch HNSW{params.connectivity} f16 (the gallery's)", "setting":
                     f"expansion_search {ef}", "build_s": build_s, "qps": batch_qps(search, queries),
                     "recall@10": recall(found, truth), "bytes_per_vector": size / len(base)})
    return rows


def e2e_on(gallery: Path, engine: str, dim: int, latency_queries: int) -> dict | None:
    """`Retriever.query` with `engine` on the benchmark's gallery: the gallery's fingerprint (and its
    index sidecar's) is set to the engine's, so the synthetic vectors are searched with real text
    queries through the real text tower. None when the engine's dimension is not the gallery's."""
    import sqlite3

    from sen_infer.engine.manifest import read_manifest

    manifest = read_manifest(engine)
    if manifest.embed_dim != dim:
        return None
    with sqlite3.connect(gallery / "gallery.sqlite") as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='fingerprint'", (manifest.fingerprint,))
    side = json.loads((gallery / "index.json").read_text())
    side["fingerprint"] = manifest.fingerprint
    (gallery / "index.json").write_text(json.dumps(side))
    return run_phase("e2e", gallery=gallery, engine=engine, latency_queries=latency_queries)


def _data_present(work: Path, n: int, nq: int, dim: int) -> bool:
    """Whether `work` holds data, queries and exact truth of these shapes (read from the .npy headers).
    The truth is written last, from the whole data: a run killed while writing the data leaves none."""
    want = {"data.npy": (n, dim), "queries.npy": (nq, dim), "truth.npy": (nq, 10)}
    try:
        return all(np.load(work / f, mmap_mode="r").shape == shape for f, shape in want.items())
    except (OSError, ValueError):
        return False


def make_data(work: Path, n: int, nq: int, dim: int) -> None:
    """data.npy, queries.npy and truth.npy (exact top-10) under `work`: in RAM up to STREAMED rows (the
    float32 data of every earlier run), past it written and scanned in chunks (`benchmarks.big_data`).
    Files already there with the right shapes are reused: a 10M rerun skips about 15 min of making them."""
    if _data_present(work, n, nq, dim):
        print(f"reusing the data in {work} (delete it to make it anew)", file=sys.stderr)
        return
    (work / "truth.npy").unlink(missing_ok=True)  # gone until the new data is whole (see _data_present)
    t = time.perf_counter()
    if n > STREAMED:
        write_clustered(work / "data.npy", work / "queries.npy", n, nq, dim)
        print(f"data written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        t = time.perf_counter()
        truth = exact_topk_streamed(np.load(work / "data.npy", mmap_mode="r"), np.load(work / "queries.npy"))
    else:
        data = clustered(n + nq, dim, seed=0, clusters=2000, spread=0.35)
        np.save(work / "data.npy", data[:n])
        np.save(work / "queries.npy", data[n:])
        t = time.perf_counter()
        truth = exact_topk(data[:n], data[n:])
    np.save(work / "truth.npy", truth)
    print(f"exact top-10 in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def engine_rows(args, gallery: Path, dim: int, figures: dict, rows: list, save) -> None:
    """`Retriever.query` end to end with each --engine on the gallery (relabelled as that engine's: its
    vectors stay synthetic): a row each, `save()` after each."""
    for engine in args.engine:
        figures[f"e2e {engine}"] = e = e2e_on(gallery, engine, dim, args.latency_queries)
        if e is None:
            print(f"skipped {engine}: its embeddings are not {dim}-d (run with --dim of the engine)", file=sys.stderr)
            continue
        rows.append({"index": f"Retriever.query ({Path(engine).name}, {e['backend']})", "setting": "end to end",
                     "open_s": e["open_s"], "search_p50_ms": e["query unfiltered"]["p50_ms"],
                     "search_p99_ms": e["query unfiltered"]["p99_ms"],
                     "camera_p50_ms": e["query camera (1 %)"]["p50_ms"]})
        save()


def quick_report(args, work: Path, gallery: Path, figures: dict, name: str, dim: int) -> int:
    """--quick: the default-parameter row (and --engine's end-to-end rows) written, the rest skipped."""
    p = figures["probe_default"]
    rows = [{"index": "gallery (VectorStore)", "setting": "default params", "open_s": p["open_s"],
             "opened": p["opened"]["how"], "build_rows_per_s": figures["build"]["rows_per_s"],
             "disk_B_per_row": figures["build"]["disk_bytes_per_row"], "search_p50_ms": p["search unfiltered"]["p50_ms"],
             "search_p99_ms": p["search unfiltered"]["p99_ms"], "camera_p50_ms": p["search camera (1 %)"]["p50_ms"],
             "time_p50_ms": p["search time window (10 %)"]["p50_ms"], "recall@10": p["recall@10"],
             "resident_B_per_row": p["resident_bytes_per_row"], "anon_B_per_row": p["anon_bytes_per_row"]}]
    columns = list(rows[0])
    write(name, figures, rows, columns)
    engine_rows(args, gallery, dim, figures, rows, lambda: write(name, figures, rows, columns))
    print(f"results: benchmarks/results/{name}.md", file=sys.stderr)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--gallery", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--truth", help=argparse.SUPPRESS)
    ap.add_argument("--extra", type=int, default=20_000, help=argparse.SUPPRESS)
    ap.add_argument("--fingerprint", default=FP, help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", default="1000", help="held-out queries (a number)")
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--engine", action="append", default=[], help="also time Retriever.query with this engine")
    ap.add_argument("--faiss", action="store_true", help="FAISS HNSW and IVF-PQ on the same vectors")
    ap.add_argument("--real", metavar="ENGINE", help="also: graph recall on SynthPEDES crops embedded by ENGINE "
                                                    "(a trained one), queried with captions")
    ap.add_argument("--real-n", type=int, default=20_000, help="crops for --real")
    ap.add_argument("--work", help="where the data and galleries go (default: a temp dir, removed after)")
    ap.add_argument("--name", default=None, help="results name (default scale_<rows>)")
    ap.add_argument("--quick", action="store_true", help="build, open, memory, latency, recall (and --engine's "
                    "end to end) only: no tuning, no side by side, no crash (what a 10M run has time for)")
    args = ap.parse_args(argv)
    if args.phase:
        print(json.dumps(PHASES[args.phase](args), default=str))
        return 0

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sen-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    n, dim, nq = args.rows, args.dim, int(args.queries)
    print(f"data: {n:,} x {dim} clustered vectors + {nq} queries", file=sys.stderr)
    make_data(work, n, nq, dim)
    common = {"data": work / "data.npy", "queries": work / "queries.npy", "truth": work / "truth.npy",
              "latency_queries": args.latency_queries}
    gallery = work / "gallery"
    shutil.rmtree(gallery, ignore_errors=True)
    figures: dict = {"rows": n, "dim": dim, "queries": nq}
    name = args.name or (f"scale_{n // 1000}k" if n < 1_000_000 else f"scale_{n // 1_000_000}m")
    figures["build"] = build = run_phase("build", timed=False, gallery=gallery, **common)
    print(f"build: {build['rows_per_s']:,.0f} rows/s", file=sys.stderr)
    figures["probe_default"] = run_phase("probe", gallery=gallery, **common)
    if args.quick:
        return quick_report(args, work, gallery, figures, name, dim)
    figures["tune"] = run_phase("tune", timed=False, gallery=gallery, **common)
    figures["probe_tuned"] = run_phase("probe", gallery=gallery, **common)
    # side by side on the index of exactly the data (before the crash phase adds rows)
    with quiet_machine():
        side = usearch_rows(gallery, dim, np.load(work / "queries.npy"), np.load(work / "truth.npy"), build["build_s"])
        if args.faiss:
            side += faiss_rows(np.load(work / "data.npy", mmap_mode="r"), np.load(work / "queries.npy"),
                               np.load(work / "truth.npy"), work)
    for row in side:  # the chart's label: which index, which setting, at what recall
        row["label"] = f"{row['index'].split(' (')[0]}, {row['setting']} (recall {row['recall@10']:.3f})"
    figures["side_by_side"] = side
    write(f"{name}_vs_faiss", {"rows": n, "dim": dim, "load_average_1min": os.getloadavg()[0]}, side,
          ["index", "setting", "build_s", "qps", "recall@10", "bytes_per_vector"], plot=("label", "qps"))
    run_phase("crash", timed=False, gallery=gallery, **common)
    figures["probe_after_crash"] = run_phase("probe", gallery=gallery, **common)
    run_phase("persist", timed=False, gallery=gallery, **common)  # the crash's rows saved: clean opens after
    rows = [{"index": "gallery (VectorStore)", "setting": f"{label}", "open_s": p["open_s"], "opened": p["opened"]["how"],
             "rows_added_on_open": p["opened"]["rows_added"], "search_p50_ms": p["search unfiltered"]["p50_ms"],
             "search_p99_ms": p["search unfiltered"]["p99_ms"],
             "camera_p50_ms": p["search camera (1 %)"]["p50_ms"], "time_p50_ms": p["search time window (10 %)"]["p50_ms"],
             "recall@10": p["recall@10"], "resident_B_per_row": p["resident_bytes_per_row"],
             "anon_B_per_row": p["anon_bytes_per_row"]}
            for label, p in (("default params", figures["probe_default"]),
                             (f"tuned (expansion_search {figures['tune']['chosen']})", figures["probe_tuned"]),
                             ("after a crash (20k rows unsaved)", figures["probe_after_crash"]))]
    columns = ["index", "setting", "open_s", "opened", "rows_added_on_open", "search_p50_ms", "search_p99_ms",
               "camera_p50_ms", "time_p50_ms", "recall@10", "resident_B_per_row", "anon_B_per_row"]
    write(name, figures, rows, columns, plot=("setting", "search_p50_ms"))
    if args.real:
        shutil.rmtree(work / "gallery_real", ignore_errors=True)
        figures["real"] = real = run_phase("real", timed=False, gallery=work / "gallery_real", engine=args.real,
                                           real_n=args.real_n)
        rows.append({"index": f"gallery, real embeddings ({real['rows']:,} SynthPEDES crops, caption queries)",
                     "setting": f"default -> tuned (expansion_search {real['tune']['chosen']})",
                     "recall@10": f"{real['recall@10 default']:.4f} -> {real['recall@10 tuned']:.4f}"})
        write(name, figures, rows, columns, plot=("setting", "search_p50_ms"))
    engine_rows(args, gallery, dim, figures, rows,  # last: the gallery is relabelled as the engine's
                lambda: write(name, figures, rows, columns, plot=("setting", "search_p50_ms")))
    print(f"results: benchmarks/results/{name}.md and {name}_vs_faiss.md", file=sys.stderr)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
