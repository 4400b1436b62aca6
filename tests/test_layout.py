"""The import rules of DESIGN.md, checked on the source (they keep the deployment SDK torch-free)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "sen_infer": {"torch", "open_clip", "sen_train", "export", "benchmarks"},
    "sen_train": {"export", "sen_infer", "benchmarks"},
    "export": {"benchmarks"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_rules(package):
    offenders = []
    for path in (ROOT / package).rglob("*.py"):
        bad = _imports(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(bad)}")
    assert not offenders, offenders


def test_data_tools_and_metrics_import_without_torch():
    code = ("import sys; import sen_train.data, sen_train.data.synth, sen_train.data.synth_video, "
            "sen_train.metrics, sen_infer; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_usearch_after_sen_infer_does_not_crash():
    # usearch's compiled module loaded before onnxruntime makes onnxruntime's import segfault;
    # sen_infer loads onnxruntime first so users can import usearch afterwards.
    code = "import sen_infer; import usearch.index; import onnxruntime; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_base_sdk_imports_neither_the_service_nor_ray():
    """The serve and cluster extras are optional: the SDK (sharded galleries included) works without them."""
    code = ("import sys, sen_infer, sen_infer.gallery.sharded, sen_infer.cli; "
            "bad = {'ray', 'fastapi', 'uvicorn', 'starlette'} & set(sys.modules); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
