"""The import rules and the layout of docs/design.md, checked on the source (they keep the deployment SDK
torch-free and each part small enough to read)."""

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



def test_only_the_benchmarks_own_smoke_tests_import_benchmarks():
    """Nothing imports `benchmarks` (DESIGN.md): a test of the product needs no benchmark code to run.
    tests/bench/ runs the benchmarks themselves, so it alone may."""
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("*.py")
                 if "bench" not in path.relative_to(ROOT / "tests").parts[:1] and "benchmarks" in _imports(path)]
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
    code = ("import sys, sen_infer, sen_infer.gallery.sharded, sen_infer.cli, sen_infer.cli.main; "
            "bad = {'ray', 'fastapi', 'uvicorn', 'starlette'} & set(sys.modules); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- the layout: sizes, cycles, private names, layers (docs/design.md, "Layers") ----------------------
LIMITED = ("sen_infer", "sen_train", "export")
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 600, 400, 80
# a function may be longer than MAX_FUNCTION when a comment says why: "# long: <reason>" on the line
# above its def (or above its decorators) or as the first line of its body
LONG_MARK = "# long:"
# each sen_infer sub-package may import only from its own layer and those below it
LAYERS = {
    "errors": 0, "files": 0,
    "engine": 1, "store": 2, "identity": 3, "vision": 4, "ingest": 5, "gallery": 6, "query": 7,
    "cli": 8, "serve": 8, "cluster": 8,
    "__init__": 9, "__main__": 9,
}


def _modules(packages=LIMITED) -> dict[str, Path]:
    out = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__" and len(parts) > 1:
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imported(module: str, tree: ast.AST, known: dict) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of a project module, lazy ones included."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.rsplit(".", node.level)[0]
                target = base + (f".{node.module}" if node.module else "")
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            if submodules:
                out += [(s, []) for s in submodules]
            elif target in known:
                out.append((target, names))
    return out


def _long_ok(lines: list[str], node) -> bool:
    """Whether a "# long: why" comment stands in the comment block right above the def (or its
    decorators), or on the first line of its body (after the docstring)."""
    i = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        if lines[i].strip().startswith(LONG_MARK):
            return True
        i -= 1
    first = node.body[0]
    after_doc = first.end_lineno if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        else first.lineno - 1
    return lines[after_doc].strip().startswith(LONG_MARK)


def test_size_limits():
    """No module over 600 lines, no class over 400, no function over 80 unless a comment says why."""
    offenders = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE:
            offenders.append(f"{name}: module of {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and size > MAX_CLASS:
                offenders.append(f"{name}.{node.name}: class of {size} lines")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > MAX_FUNCTION \
                    and not _long_ok(lines, node):
                offenders.append(f"{name}.{node.name}: function of {size} lines without a '{LONG_MARK}' comment")
    assert not offenders, "\n".join(offenders)


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for target, _ in _imported(module, ast.parse(path.read_text()), known):
            if target != module:
                graph[module].add(target)
    return graph


def test_no_import_cycles():
    """No module reaches itself through imports (lazy imports inside functions count too)."""
    graph, cycles = _graph(), []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join(path[path.index(n):] + [n]))
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def test_no_private_names_imported_across_packages():
    """A name with a leading underscore stays inside its (sub-)package: other packages get a public one."""
    known, offenders = _modules(), []
    for module, path in known.items():
        for target, names in _imported(module, ast.parse(path.read_text()), known):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _subpackage(target) != _subpackage(module):
                offenders.append(f"{module} imports {private} from {target}")
    assert not offenders, "\n".join(offenders)


def test_sdk_layers():
    """engine <- store <- identity <- vision <- ingest <- gallery <- query <- cli/serve/cluster: a layer
    imports only from itself and the layers below it (errors and files are below everything)."""
    known, offenders = _modules(("sen_infer",)), []

    def layer(module: str) -> int:
        parts = module.split(".")
        key = parts[1] if len(parts) > 1 else "__init__"
        assert key in LAYERS, f"{module}: sen_infer.{key} has no layer in LAYERS (add it, and to docs/design.md)"
        return LAYERS[key]

    for module, path in known.items():
        for target, _ in _imported(module, ast.parse(path.read_text()), known):
            if layer(target) > layer(module):
                offenders.append(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
    assert not offenders, "\n".join(offenders)


def test_public_api_is_declared_and_documented():
    """`sen_infer.__all__` is the public API; every name in it has a docstring, and a function's or
    class's says what it returns or raises where it does (Args/Returns/Raises, or one line for a type)."""
    import sen_infer

    missing = [name for name in sen_infer.__all__ if not (getattr(sen_infer, name).__doc__ or "").strip()]
    assert not missing, f"undocumented public names: {missing}"
    assert {"Retriever", "Gallery", "Hit", "Row", "IngestReport", "VectorStore"} <= set(sen_infer.__all__)
