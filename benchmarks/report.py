"""Writes a benchmark's figures as JSON (with machine info) and a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def results_dir(out_dir=None) -> Path:
    """Where results are written and read: `out_dir`, else $SEN_BENCH_RESULTS, else benchmarks/results/."""
    return Path(out_dir or os.environ.get("SEN_BENCH_RESULTS") or RESULTS)


def machine_info(packages=("numpy", "opencv-python-headless", "onnxruntime", "torch", "usearch")) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)
    return head + body


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def plot_bars(path: Path, title: str, labels: list[str], values: list[float], ylabel: str, log: bool = False) -> None:
    """A horizontal bar chart PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color="#4c72b0")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    if log:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(name: str, figures: dict, rows: list[dict], columns: list[str], out_dir: Path | None = None,
          plot: tuple[str, str] | None = None) -> Path:
    """Write `name.json`, `name.md` and, with `plot=(label column, value column)`, `name.png`, under
    `out_dir`, else $SEN_BENCH_RESULTS, else benchmarks/results/."""
    out_dir = results_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "machine": machine_info(), **figures, "rows": rows}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1))
    (out_dir / f"{name}.md").write_text(f"# {name}\n\n{markdown_table(rows, columns)}\n"
                                        f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores']} cores.\n")
    if plot is not None:
        label, value = plot
        values = [float(r[value]) for r in rows]
        spread = max(values) / max(min(v for v in values if v > 0), 1e-12) if any(v > 0 for v in values) else 1
        plot_bars(out_dir / f"{name}.png", f"{name} ({doc['machine']['cpu']}, {doc['machine']['cores']} cores)",
                  [str(r[label]) for r in rows], values, value, log=spread > 100)
    return path
