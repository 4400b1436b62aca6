"""One benchmark on two checkouts, side by side: is a change (a refactor, a new default) within noise?

    python -m benchmarks.ab --old OLD_CHECKOUT --new NEW_CHECKOUT [--rounds 3] [--name ab_e2e] \
        -- e2e --engine ENGINE_DIR --n 20000 --queries 50

Each round runs `python -m benchmarks.<benchmark> ARGS` in the old checkout, then in the new one (so a
slow moment of the machine hits both alike), each writing its results to a folder of its own
(SEN_BENCH_RESULTS). Every numeric figure of the results (top-level figures, and each row's numbers
keyed by the row's text columns) is reduced to its median over the rounds, and the new/old ratio is
reported, with the spread of the old checkout's own rounds (max/min) as the noise to compare it with.
Writes `NAME.json` and `NAME.md` under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import markdown_table, write

# figures where a smaller value is better (the ratio's meaning flips): times and sizes, not rates
LOWER_IS_BETTER = ("_ms", "seconds", "bytes_per_item")


def lower_is_better(figure: str) -> bool:
    """Whether a smaller value of `figure` is better: a time or a size (rates such as *_per_s are not)."""
    name = figure.split(":")[-1].strip()
    return name.endswith(LOWER_IS_BETTER) and not name.endswith("_per_s")


def flatten(doc: dict) -> dict[str, float]:
    """Numeric figures of a results document by name: `figure`, `figure.sub`, and `row label: column`."""
    out: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            out[prefix] = float(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    for key, value in doc.items():
        if key in ("machine", "rows"):
            continue
        if isinstance(value, list):  # a list of row dicts (e.g. filtered search levels)
            for row in value:
                if isinstance(row, dict):
                    label = " ".join(str(v) for v in row.values() if isinstance(v, str)) or \
                        " ".join(f"{k}={v}" for k, v in list(row.items())[:1])
                    for k, v in row.items():
                        walk(f"{key}[{label}]: {k}", v)
            continue
        walk(key, value)
    for row in doc.get("rows", []):
        label = " ".join(str(v) for v in row.values() if isinstance(v, str))
        for k, v in row.items():
            if not isinstance(v, str):
                walk(f"{label}: {k}", v)
    return out


def run_once(checkout: Path, benchmark: str, args: list[str], out_dir: Path) -> dict:
    """Run the benchmark in `checkout` (its own code first on sys.path); its results document."""
    env = {**os.environ, "SEN_BENCH_RESULTS": str(out_dir), "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{benchmark}", *args], cwd=checkout, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {benchmark} failed in {checkout}: {done.stderr.strip().splitlines()[-1:]}")
    found = sorted(out_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"error: {benchmark} in {checkout} wrote no results")
    return json.loads(found[-1].read_text())


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("error: give the benchmark after --, e.g. -- e2e --engine ENGINE_DIR")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ab")
    ap.add_argument("--old", required=True, type=Path, help="the checkout before the change")
    ap.add_argument("--new", required=True, type=Path, help="the checkout after the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", help="results file name (default ab_<benchmark>)")
    args = ap.parse_args(argv[:cut])
    benchmark, bench_args = argv[cut + 1], argv[cut + 2:]
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side, checkout in (("old", args.old), ("new", args.new)):
                out = Path(tmp) / f"{side}{r}"
                out.mkdir()
                runs[side].append(flatten(run_once(checkout.resolve(), benchmark, bench_args, out)))
                print(f"round {r + 1}/{args.rounds}: {side} done", flush=True)
    common = sorted(set.intersection(*(set(f) for side in runs.values() for f in side)))
    rows = []
    for key in common:
        old = [f[key] for f in runs["old"]]
        new = [f[key] for f in runs["new"]]
        o, n = statistics.median(old), statistics.median(new)
        if o == 0 or n == 0:
            continue
        spread = max(old) / min(old) if min(old) > 0 else float("nan")
        rows.append({"figure": key, "old": o, "new": n, "new/old": n / o, "old_spread": spread,
                     "better": "lower" if lower_is_better(key) else "higher"})
    figures = {"benchmark_run": benchmark, "args": bench_args, "rounds": args.rounds,
               "old": str(args.old), "new": str(args.new)}
    columns = ["figure", "old", "new", "new/old", "old_spread", "better"]
    print(markdown_table(rows, columns))
    print(f"-> {write(args.name or f'ab_{benchmark}', figures, rows, columns)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
