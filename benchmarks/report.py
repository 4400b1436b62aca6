"""Writes a benchmark's figures as JSON (with machine info) and a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


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


def write(name: str, figures: dict, rows: list[dict], columns: list[str], out_dir: Path = RESULTS) -> Path:
    """Write `name.json` and `name.md`; returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "machine": machine_info(), **figures, "rows": rows}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1))
    (out_dir / f"{name}.md").write_text(f"# {name}\n\n{markdown_table(rows, columns)}\n"
                                        f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores']} cores.\n")
    return path
