"""Side-by-side timing: variants run round-robin so machine noise hits all of them alike."""

from __future__ import annotations

import time

import numpy as np


def interleaved(cases: dict, repeats: int, warmup: int = 1) -> dict[str, dict]:
    """{case: {p50_ms, p95_ms, p99_ms, mean_ms}} for callables run `repeats` times each, interleaved."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: summarise(v) for k, v in times.items()}


def summarise(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "n": int(a.size)}


def resident_kb() -> dict:
    """This process's resident memory by kind, in KiB ({"RssAnon", "RssFile", "RssShmem"}; Linux
    /proc/self/status, {} where there is none): mapped index files count as RssFile, copies as RssAnon."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("RssAnon", "RssFile", "RssShmem")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def memory_per_row(before: dict, after: dict, rows: int) -> dict:
    """Resident bytes a row between two `resident_kb` readings: in all (copies + mapped files) and copies alone."""
    total = lambda r: r.get("RssAnon", 0) + r.get("RssFile", 0)  # noqa: E731
    return {"resident_bytes_per_row": (total(after) - total(before)) * 1024 / rows,
            "anon_bytes_per_row": (after.get("RssAnon", 0) - before.get("RssAnon", 0)) * 1024 / rows}


def matmul_peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Achieved float32 GEMM throughput of NumPy's BLAS on this machine: the practical peak."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9
