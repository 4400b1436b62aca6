"""Vector search for galleries: usearch HNSW (f32 / f16 / i8) against exact search, side by side.

    python -m benchmarks.index --n 100000 [--n 1000000] [--dim 512] [--engine ENGINE_DIR --real 2000]

Data: clustered, CLIP-like unit vectors (people form tight groups: several crops per track and
look-alikes), the case that matters. Uniform random unit vectors are a degenerate case (every
point is nearly equidistant from every other in 512-D, so graph search and recall behave unlike
real embeddings); one row shows them for contrast. With --engine, also real embeddings of
SynthPEDES images drawn in memory. Per configuration: build rate, batch QPS, single-query p50/p99,
recall@10 against exact search, bytes per item, and the cost of a filtered query at 50/10/1%
selectivity (over-fetch + post-filter on the graph vs exact search over the selected rows).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sen_infer  # noqa: F401  (loads onnxruntime before usearch; the other order segfaults)
from usearch.index import Index, MetricKind, search as usearch_search  # noqa: E402

from benchmarks.report import write
from benchmarks.timing import summarise

K = 10


def clustered(n: int, dim: int, seed: int = 0, clusters: int | None = None, spread: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clusters = clusters or max(10, n // 50)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * (spread / np.sqrt(dim))
    x = centres[rng.integers(0, clusters, n)] + noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def uniform(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    out = []
    for i in range(0, len(queries), 256):
        s = queries[i : i + 256] @ data.T
        idx = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, idx, 1), axis=1)
        out.append(np.take_along_axis(idx, order, 1))
    return np.concatenate(out)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def bench_dataset(name: str, data: np.ndarray, queries: np.ndarray, dtypes, rows: list, single: int = 200):
    n, dim = data.shape
    truth = exact_topk(data, queries)
    keys = np.arange(n, dtype=np.uint64)
    t0 = time.perf_counter()
    exact_topk(data, queries)
    dt = time.perf_counter() - t0
    rows.append({"data": name, "n": n, "method": "numpy exact f32", "build_per_s": None,
                 "qps": len(queries) / dt, "recall@10": 1.0, "bytes_per_item": dim * 4})
    t0 = time.perf_counter()
    usearch_search(data, queries, K, MetricKind.Cos, exact=True)
    dt = time.perf_counter() - t0
    rows.append({"data": name, "n": n, "method": "usearch exact f32", "build_per_s": None,
                 "qps": len(queries) / dt, "recall@10": 1.0, "bytes_per_item": dim * 4})
    indexes = {}
    for dtype in dtypes:
        index = Index(ndim=dim, metric="cos", dtype=dtype)
        t0 = time.perf_counter()
        index.add(keys, data)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = index.search(queries, K)
        dt = time.perf_counter() - t0
        lat = []
        for q in queries[:single]:
            t1 = time.perf_counter()
            index.search(q, K)
            lat.append((time.perf_counter() - t1) * 1e3)
        s = summarise(lat)
        rows.append({"data": name, "n": n, "method": f"usearch HNSW {dtype}", "build_per_s": n / build,
                     "qps": len(queries) / dt, "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
                     "recall@10": recall(np.asarray(res.keys, np.int64), truth),
                     "bytes_per_item": index.memory_usage / n})
        indexes[dtype] = index
    return truth, indexes


def bench_filtered(data: np.ndarray, queries: np.ndarray, index: Index, rows: list, single: int = 100):
    """Over-fetch + post-filter on the graph vs exact over the selected rows, per selectivity."""
    n = len(data)
    rng = np.random.default_rng(3)
    for share in (0.5, 0.1, 0.01):
        mask = rng.random(n) < share
        sel = np.flatnonzero(mask)
        truth = exact_topk(data[sel], queries[:single])
        truth = sel[truth]
        found, lat_graph = [], []
        for q in queries[:single]:
            t0 = time.perf_counter()
            fetch = max(4 * K, int(K / share * 2))
            while True:
                res = index.search(q, min(fetch, n))
                k = np.asarray(res.keys, np.int64)
                k = k[mask[k]][:K]
                if len(k) >= K or fetch >= n:
                    break
                fetch *= 4
            lat_graph.append((time.perf_counter() - t0) * 1e3)
            found.append(k)
        lat_exact = []
        for q in queries[:single]:
            t0 = time.perf_counter()
            s = data[sel] @ q
            np.argpartition(-s, min(K, len(s) - 1))[:K]
            lat_exact.append((time.perf_counter() - t0) * 1e3)
        g, e = summarise(lat_graph), summarise(lat_exact)
        rows.append({"selectivity": share, "selected": int(mask.sum()), "graph_p50_ms": g["p50_ms"],
                     "graph_p99_ms": g["p99_ms"], "graph_recall@10": recall(found, truth),
                     "exact_p50_ms": e["p50_ms"], "exact_p99_ms": e["p99_ms"],
                     "faster": "exact" if e["p50_ms"] < g["p50_ms"] else "graph"})


def real_embeddings(engine: str, n: int) -> np.ndarray:
    from sen_infer.engine.encoders import Encoders
    from sen_train.data.synth import SynthConfig, plan_identities, render_image

    enc = Encoders(engine, backend="onnx-cpu")
    cfg = SynthConfig(ids=max(3, n // 4), images_per_id=4, seed=99)
    imgs = [render_image(p.attributes, cfg, p.pid, k)[0] for p in plan_identities(cfg) for k in range(4)][:n]
    return enc.encode_images(imgs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.index")
    ap.add_argument("--n", type=int, nargs="+", default=[100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--engine", help="also benchmark real SynthPEDES embeddings of this engine")
    ap.add_argument("--real", type=int, default=2000, help="how many real embeddings (with --engine)")
    args = ap.parse_args(argv)
    rows, filtered = [], []
    dtypes = ("f32", "f16", "i8")
    for n in args.n:
        data = clustered(n + args.queries, args.dim)
        _, indexes = bench_dataset(f"clustered {args.dim}-d", data[: n], data[n:], dtypes, rows)
        bench_filtered(data[:n], data[n:], indexes["f16"], filtered)
    n0 = args.n[0]
    u = uniform(n0 + args.queries, args.dim, seed=5)
    bench_dataset(f"uniform {args.dim}-d (degenerate)", u[:n0], u[n0:], ("f16",), rows)
    if args.engine:
        real = real_embeddings(args.engine, args.real)
        split = int(len(real) * 0.9)
        bench_dataset(f"SynthPEDES {real.shape[1]}-d", real[:split], real[split:], dtypes, rows)
    for r in rows:
        r["label"] = f"{r['data']} n={r['n']} {r['method']}"
    figures = {"k": K, "queries": args.queries, "filtered_search": filtered,
               "note": "uniform random vectors are a degenerate case; judge by the clustered and real rows"}
    path = write("index", figures, rows, ["data", "n", "method", "build_per_s", "qps", "p50_ms", "p99_ms",
                                          "recall@10", "bytes_per_item"], plot=("label", "qps"))
    for r in rows:
        print(f"{r['label']:<52} qps {r['qps']:10.0f}  recall@10 {r['recall@10']:.3f}  "
              f"{r['bytes_per_item']:7.0f} B/item" + (f"  build {r['build_per_s']:8.0f}/s" if r['build_per_s'] else ""))
    for f in filtered:
        print(f"filtered {f['selectivity']:>5}: graph p50 {f['graph_p50_ms']:.2f} ms (recall {f['graph_recall@10']:.3f})"
              f"  exact p50 {f['exact_p50_ms']:.2f} ms -> {f['faster']}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
