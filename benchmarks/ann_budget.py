"""usearch (the gallery's index) and FAISS at equal build budgets: recall@10 against QPS curves.

    python -m benchmarks.ann_budget [--rows 100000] [--dim 512] [--queries 1000] [--name ann_budget]

`pip install faiss-cpu` (a benchmark-only dependency). Data: clustered unit vectors (`benchmarks.index.
clustered`, 2,000 centres, sigma 0.35), `--queries` held out; truth: exact top-10 by a float32 scan.

The comparison is fair only at the same graph: the same degree and the same construction width. So every
HNSW is built at M 16 and 32 (usearch `connectivity`, FAISS `M`) and at efConstruction 40, 128 and 200
(usearch `expansion_add`), and each is searched at widths 16 to 512: a curve per build. usearch stores
float16 (the gallery's choice: half the bytes), FAISS HNSWFlat float32. IVF-PQ (4,096 or 4*sqrt(n) lists,
64 x 8-bit codes) is shown with and without re-ranking its candidates by exact float32 distances
(`IndexRefineFlat`, k_factor 4). Both libraries use 2 threads for building and for batch search.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.index import clustered, exact_topk
from benchmarks.report import write

WIDTHS = (16, 32, 64, 128, 256, 512)
THREADS = 2


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def qps(search, queries: np.ndarray, repeats: int = 2) -> float:
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        search(queries)
        best = max(best, len(queries) / (time.perf_counter() - t0))
    return best


def usearch_curves(data, queries, truth, m: int, ef_add: int) -> list[dict]:
    from usearch.index import Index

    index = Index(ndim=data.shape[1], metric="cos", dtype="f16", connectivity=m, expansion_add=ef_add)
    t0 = time.perf_counter()
    index.add(np.arange(len(data)), data, threads=THREADS)
    build = time.perf_counter() - t0
    rows = []
    for ef in WIDTHS:
        index.expansion_search = ef
        found = np.asarray(index.search(queries, 10, threads=THREADS).keys, np.int64)
        rows.append({"index": f"usearch HNSW{m} f16", "build": f"efConstruction {ef_add}", "width": ef,
                     "build_s": build, "recall@10": recall(found, truth),
                     "qps": qps(lambda q: index.search(q, 10, threads=THREADS), queries),
                     "bytes_per_vector": index.memory_usage / len(data)})
    return rows


def faiss_hnsw_curves(data, queries, truth, m: int, ef_add: int) -> list[dict]:
    import faiss

    index = faiss.IndexHNSWFlat(data.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_add
    t0 = time.perf_counter()
    index.add(data)
    build = time.perf_counter() - t0
    rows = []
    for ef in WIDTHS:
        index.hnsw.efSearch = ef
        found = index.search(queries, 10)[1]
        rows.append({"index": f"FAISS HNSW{m} flat f32", "build": f"efConstruction {ef_add}", "width": ef,
                     "build_s": build, "recall@10": recall(found, truth),
                     "qps": qps(lambda q: index.search(q, 10), queries),
                     "bytes_per_vector": (4 * data.shape[1] + 8 * m) })
    return rows


def faiss_ivfpq_curves(data, queries, truth) -> list[dict]:
    import faiss

    n, dim = data.shape
    nlist = 4096 if n >= 500_000 else max(64, int(4 * np.sqrt(n)))
    m = 64 if dim % 64 == 0 else 16
    rows = []
    for refine in (False, True):
        ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexRefineFlat(ivf) if refine else ivf
        t0 = time.perf_counter()
        sample = np.random.default_rng(0).choice(n, min(n, 50 * nlist), replace=False)
        index.train(data[np.sort(sample)])
        index.add(data)
        build = time.perf_counter() - t0
        if refine:
            index.k_factor = 4
        for nprobe in (4, 16, 64, 256):
            faiss.extract_index_ivf(index).nprobe = nprobe
            found = index.search(queries, 10)[1]
            rows.append({"index": f"FAISS IVF{nlist}-PQ{m}x8" + (" + re-rank (flat f32, 4x)" if refine else ""),
                         "build": "trained on 50 per list", "width": nprobe, "build_s": build,
                         "recall@10": recall(found, truth), "qps": qps(lambda q: index.search(q, 10), queries),
                         "bytes_per_vector": m + 8 + (4 * dim if refine else 0)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--builds", default="16:40,16:128,16:200,32:40,32:128,32:200",
                    help="M:efConstruction pairs to build with each library")
    ap.add_argument("--name", default="ann_budget")
    a = ap.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(THREADS)
    everything = clustered(a.rows + a.queries, a.dim, seed=0, clusters=2000)
    data, queries = np.ascontiguousarray(everything[:a.rows]), np.ascontiguousarray(everything[a.rows:])
    truth = exact_topk(data, queries, 10)
    rows = []
    for pair in a.builds.split(","):
        m, ef_add = (int(x) for x in pair.split(":"))
        for curves in (usearch_curves, faiss_hnsw_curves):
            got = curves(data, queries, truth, m, ef_add)
            print(f"  {got[0]['index']} {got[0]['build']}: built in {got[0]['build_s']:.1f} s", file=sys.stderr,
                  flush=True)
            rows += got
    rows += faiss_ivfpq_curves(data, queries, truth)
    for r in rows:
        r["build_s"], r["recall@10"], r["qps"] = round(r["build_s"], 2), round(r["recall@10"], 4), round(r["qps"])
        r["bytes_per_vector"] = round(r["bytes_per_vector"])
    write(a.name, {"rows_indexed": a.rows, "dim": a.dim, "queries": a.queries, "threads": THREADS}, rows,
          ["index", "build", "width", "build_s", "recall@10", "qps", "bytes_per_vector"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
