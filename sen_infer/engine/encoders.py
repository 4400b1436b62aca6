"""Text and image encoders over an engine dir, on the fastest backend available, verified on open.

Backends: "tensorrt-int8" / "tensorrt" (plans, GPU), "onnx-cuda" (onnxruntime-gpu), "onnx-cpu-int8"
(static QDQ int8; dynamic int8 in engine dirs exported before it) and "onnx-cpu" (fp32). "auto" takes
the first available in that order.

Opening enforces the engine-dir contract (docs/design.md) before a single embedding reaches a gallery:
the manifest's schema and ranges, the sha256 of every file the chosen backend loads (cached by
path + size + mtime + ctime, see `HashCache`), the towers' input/output signatures against the
manifest, a dry run of the text tower at the full context length, and for TensorRT plans the
TensorRT version and GPU compute capability they were built for. `verify=False` skips only the
sha256 step, for people who know why (e.g. a hand-edited engine under development).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from sen_infer.errors import BackendUnavailable, EngineDirError, ManifestError, QueryError, require_utf8
from sen_infer.engine.manifest import Manifest, read_manifest, sha256_file, verify_files
from sen_infer.engine.preprocess import to_input
from sen_infer.engine.tokenizer import ClipTokenizer

BACKENDS = ("tensorrt-int8", "tensorrt", "onnx-cuda", "onnx-cpu-int8", "onnx-cpu")
TOKENIZER = "tokenizer.json"
IMAGE_PLANS = {"fp16": "image_encoder.fp16.plan", "int8": "image_encoder.int8.plan"}
TEXT_PLAN = "text_encoder.fp16.plan"
FILES = {
    "onnx-cuda": ("image_encoder.onnx", "text_encoder.onnx"),
    "onnx-cpu": ("image_encoder.onnx", "text_encoder.onnx"),
    "onnx-cpu-int8": ("image_encoder.int8.onnx", "text_encoder.int8.onnx"),
    "tensorrt": (IMAGE_PLANS["fp16"], TEXT_PLAN),
    "tensorrt-int8": (IMAGE_PLANS["int8"], TEXT_PLAN),
}


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text[:limit] + ("..." if len(text) > limit else "")


# ---- sha256, cached ----------------------------------------------------------------------------
def _default_cache_file() -> Path:
    root = os.environ.get("SEN_INFER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
        / "sen_infer"
    return Path(root) / "sha256.json"


class HashCache:
    """sha256 of files, remembered by (absolute path, size, mtime_ns, ctime_ns) so a 350 MB tower is
    hashed once rather than on every start. ctime cannot be set from user space, so a file rewritten
    with its old size and mtime restored is still re-hashed. The cache is a convenience: when its file
    cannot be read or written, every file is simply hashed."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else _default_cache_file()
        self.hashed = 0  # files actually read in this process (for tests and curious users)

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError, RecursionError):  # a damaged cache is an empty one
            return {}

    def _save(self, entries: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".sha256.", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f)
            os.replace(tmp, self.path)
        except OSError:
            pass

    def __call__(self, file: Path) -> str:
        file = Path(file).resolve()
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        key = os.fsencode(file).decode("utf-8", "backslashreplace")
        entry = self._load().get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
            return entry["sha256"]
        digest = sha256_file(file)
        self.hashed += 1
        entries = self._load()  # re-read: another process may have added entries meanwhile
        entries[key] = {"stamp": stamp, "sha256": digest}
        self._save(entries)
        return digest


# ---- towers --------------------------------------------------------------------------------------
class OrtTower:
    """An ONNX tower on onnxruntime: one input, one output, errors as one-line EngineDirErrors.

    Args:
        path: the .onnx file. providers: onnxruntime execution providers, in order of preference.

    Raises:
        EngineDirError: onnxruntime cannot load the file, or it is not a one-input one-output tower.
    """

    def __init__(self, path: Path, providers: list[str]):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # ALL (and EXTENDED) fuse the int8 QDQ pairs into int8 kernels; BASIC runs them as fp32 and was
        # 2-7x slower for int8 (benchmarks.session_options). Threads and arena stay at onnxruntime's
        # defaults: no other setting was measured better consistently (docs/benchmarks.md).
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # onnxruntime's own warnings are not for end users
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind types for unparsable models
            raise EngineDirError(f"{path}: onnxruntime cannot load it ({_one_line(e)})") from None
        inp, out = self.session.get_inputs(), self.session.get_outputs()
        if len(inp) != 1 or len(out) != 1:
            raise EngineDirError(f"{path}: expected one input and one output, found {len(inp)} and {len(out)}")
        self.input, self.input_type, self.input_shape = inp[0].name, inp[0].type, list(inp[0].shape)
        self.output_shape = list(out[0].shape)
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4  # failures come back as exceptions; no log lines on stderr

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The tower's output for the batch `x`; EngineDirError when inference fails."""
        try:
            return self.session.run(None, {self.input: x}, self.run_options)[0]
        except Exception as e:
            raise EngineDirError(f"{self.path}: inference failed ({_one_line(e)})") from None


class TrtTower:
    """A TensorRT plan run through cuda-python buffers (no torch). Also the runner export's GPU
    parity gate uses, so the gate checks the code deployments run."""

    def __init__(self, path: Path):
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self.trt, self.cudart, self.path = trt, cudart, path
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineDirError(f"{path}: TensorRT cannot deserialize this plan")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.input_type = "tensor(int32)" if self.engine.get_tensor_dtype(self.input) == trt.int32 \
            else "tensor(float)"
        self.input_shape = list(self.engine.get_tensor_shape(self.input))
        self.output_shape = list(self.engine.get_tensor_shape(self.output))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        cudart = self.cudart
        x = np.ascontiguousarray(x)
        if not self.context.set_input_shape(self.input, x.shape):
            raise EngineDirError(f"{self.path}: input shape {x.shape} is outside the plan's optimisation profile")
        out = np.empty(tuple(self.context.get_tensor_shape(self.output)), np.float32)
        _, d_in = cudart.cudaMalloc(x.nbytes)
        _, d_out = cudart.cudaMalloc(out.nbytes)
        try:
            cudart.cudaMemcpy(d_in, x.ctypes.data, x.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            self.context.set_tensor_address(self.input, d_in)
            self.context.set_tensor_address(self.output, d_out)
            if not self.context.execute_async_v3(0):
                raise EngineDirError(f"{self.path}: TensorRT execution failed")
            cudart.cudaDeviceSynchronize()
            cudart.cudaMemcpy(out.ctypes.data, d_out, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        finally:
            cudart.cudaFree(d_in)
            cudart.cudaFree(d_out)
        return out


# ---- TensorRT validity ---------------------------------------------------------------------------
def trt_runtime() -> tuple[str, str]:
    """(installed TensorRT version, compute capability "M.m" of GPU 0); ImportError / RuntimeError if none."""
    import tensorrt
    from cuda.bindings import runtime as cudart

    attr = cudart.cudaDeviceAttr
    err, major = cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, 0)
    err2, minor = cudart.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, 0)
    if int(err) or int(err2):
        raise RuntimeError(f"no CUDA GPU ({err})")
    return tensorrt.__version__, f"{major}.{minor}"


def trt_mismatch(recorded: dict | None, version: str, capability: str) -> str | None:
    """Why plans built as `recorded` (the manifest's `tensorrt`) cannot run on this TensorRT + GPU, or None.
    TensorRT plans are valid only for the TensorRT release and the GPU architecture they were built with."""
    if not recorded:
        return "the manifest records no TensorRT build (version, compute capability)"
    problems = []
    if str(recorded.get("version")) != version:
        problems.append(f"built with TensorRT {recorded.get('version')}, this machine has TensorRT {version}")
    if str(recorded.get("compute_capability")) != capability:
        problems.append(f"built for compute capability {recorded.get('compute_capability')} "
                        f"({recorded.get('gpu', '?')}), this GPU is {capability}")
    return "; ".join(problems) or None


# ---- choosing a backend --------------------------------------------------------------------------
def _unavailable(backend: str, engine_dir: Path) -> str | None:
    """None when `backend` can run here, else the reason it cannot (files, packages, GPU)."""
    missing = [f for f in FILES[backend] if not (engine_dir / f).is_file()]
    if missing:
        return f"{', '.join(missing)} not in {engine_dir}"
    if backend.startswith("tensorrt"):
        try:
            version, capability = trt_runtime()
        except ImportError:
            return "tensorrt / cuda-python are not installed"
        except Exception as e:  # cuda-python reports a missing driver or GPU in several ways
            return f"no usable CUDA GPU ({_one_line(e)})"
        return None
    import onnxruntime as ort

    if backend == "onnx-cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu instead of onnxruntime)"
    return None


def _foreign_plans(backend: str, engine_dir: Path, manifest: Manifest) -> str | None:
    """For a TensorRT backend that can run here: why its plans belong to another TensorRT or GPU, or None."""
    if not backend.startswith("tensorrt"):
        return None
    why = trt_mismatch(manifest.tensorrt, *trt_runtime())
    return f"{engine_dir / FILES[backend][0]}: {why}; rebuild with python -m export.trt" if why else None


def available_backends(engine_dir: str | os.PathLike) -> list[str]:
    """The backends that can run `engine_dir` on this machine, fastest first."""
    engine_dir = Path(engine_dir)
    manifest = read_manifest(engine_dir)
    return [b for b in BACKENDS if _unavailable(b, engine_dir) is None
            and all(f in manifest.files for f in FILES[b]) and _foreign_plans(b, engine_dir, manifest) is None]


def open_engine(engine_dir: str | os.PathLike) -> tuple[Manifest, ClipTokenizer]:
    """The manifest and tokenizer of an engine dir (unverified; `Encoders` verifies)."""
    engine_dir = _engine_path(engine_dir)
    manifest = read_manifest(engine_dir)
    return manifest, _tokenizer(engine_dir, manifest)


def _engine_path(engine_dir) -> Path:
    engine_dir = Path(engine_dir)
    require_utf8(str(engine_dir), "engine dir path", EngineDirError)  # onnxruntime and OpenCV need UTF-8 paths
    if not engine_dir.is_dir():
        raise EngineDirError(f"engine dir {engine_dir} does not exist (create one with python -m export.onnx)")
    return engine_dir


def _tokenizer(engine_dir: Path, manifest: Manifest) -> ClipTokenizer:
    tok = ClipTokenizer(engine_dir / TOKENIZER, manifest.context_length)
    if (tok.sot_id, tok.eot_id) != (manifest.sot_id, manifest.eot_id):
        raise ManifestError(f"{engine_dir / 'manifest.json'}: sot/eot ids {manifest.sot_id}/{manifest.eot_id} "
                            f"differ from {TOKENIZER}'s {tok.sot_id}/{tok.eot_id}")
    return tok


class Encoders:
    """The two towers of an engine dir. `encode_text` and `encode_images` return float32 [N, D].

    Opening checks the engine dir against its manifest (see the module's docstring), so that a wrong or
    tampered file fails here, not inside a query.

    Args:
        engine_dir: the engine dir.
        backend: "auto" (the first of `BACKENDS` that can run here) or one of them by name.
        batch_size: most texts or images per tower call.
        verify: check the sha256 of the tokenizer and the towers loaded against the manifest.
        hash_cache: where sha256s are remembered (default `HashCache()`, under ~/.cache/sen_infer).

    Raises:
        EngineDirError: no engine dir there, a file missing or modified (ManifestError), a tower that does
            not fit the manifest, plans built for another TensorRT or GPU, or no backend that can run.
        BackendUnavailable: the backend named is unknown or cannot run here.
    """

    def __init__(self, engine_dir: str | os.PathLike, backend: str = "auto", batch_size: int = 32,
                 verify: bool = True, hash_cache: HashCache | None = None):
        self.engine_dir = _engine_path(engine_dir)
        self.manifest = read_manifest(self.engine_dir)
        self.batch_size = batch_size
        self.backend = self._choose(backend, verify)
        names = FILES[self.backend]
        if verify:
            verify_files(self.engine_dir, self.manifest, (TOKENIZER, *names), digest=hash_cache or HashCache())
        self.tokenizer = _tokenizer(self.engine_dir, self.manifest)
        image_file, text_file = (self.engine_dir / f for f in names)
        if self.backend.startswith("tensorrt"):
            self._image, self._text = TrtTower(image_file), TrtTower(text_file)
        else:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.backend == "onnx-cuda" \
                else ["CPUExecutionProvider"]
            self._image, self._text = OrtTower(image_file, providers), OrtTower(text_file, providers)
        self._check_towers(image_file, text_file)

    def _choose(self, backend: str, verify: bool) -> str:
        if backend not in ("auto", *BACKENDS):
            raise BackendUnavailable(f"unknown backend {backend!r} (choose from auto, {', '.join(BACKENDS)})")
        if backend != "auto":
            reason = _unavailable(backend, self.engine_dir)
            if reason is not None:
                raise BackendUnavailable(f"backend {backend} is unavailable: {reason}")
            foreign = _foreign_plans(backend, self.engine_dir, self.manifest)
            if foreign is not None:
                raise EngineDirError(foreign)  # plans that exist but belong to another TensorRT or GPU
            return backend
        reasons = {}
        for b in BACKENDS:
            reasons[b] = _unavailable(b, self.engine_dir)
            if reasons[b] is not None:
                continue
            unlisted = [f for f in FILES[b] if f not in self.manifest.files]
            if unlisted and verify:
                warnings.warn(f"{self.engine_dir}: ignoring {', '.join(unlisted)}: not listed in manifest.json "
                              f"(left by an interrupted export?)", stacklevel=3)
                continue
            foreign = _foreign_plans(b, self.engine_dir, self.manifest)
            if foreign is not None:
                warnings.warn(f"{foreign}; using the next backend", stacklevel=3)
                continue
            return b
        raise EngineDirError(f"{self.engine_dir}: no usable towers ({reasons['onnx-cpu'] or 'see the warnings'})")

    def _check_towers(self, image_file: Path, text_file: Path) -> None:
        """The towers' signatures against the manifest, and the text tower at the full context length:
        a wrong or swapped file, or a manifest edited by hand, fails here and not inside a query."""
        m = self.manifest
        want_image = [3, *m.image_size]

        def static(dim):
            return dim if isinstance(dim, int) else None

        img, txt = self._image, self._text
        if img.input_type != "tensor(float)" or len(img.input_shape) != 4 or \
                any(static(d) not in (None, w) for d, w in zip(img.input_shape[1:], want_image)):
            raise EngineDirError(f"{image_file}: is not an image tower for [B, {', '.join(map(str, want_image))}] "
                                 f"float input (it takes {img.input_type} {img.input_shape})")
        if txt.input_type != "tensor(int32)" or len(txt.input_shape) != 2:
            raise EngineDirError(f"{text_file}: is not a text tower for [B, L] int32 tokens "
                                 f"(it takes {txt.input_type} {txt.input_shape})")
        for path, tower in ((image_file, img), (text_file, txt)):
            if len(tower.output_shape) != 2 or static(tower.output_shape[1]) not in (None, m.embed_dim):
                raise EngineDirError(f"{path}: output {tower.output_shape} is not [B, {m.embed_dim}] "
                                     f"(embed_dim in manifest.json)")
        tokens = np.zeros((1, m.context_length), np.int32)
        tokens[0, 0], tokens[0, -1] = m.sot_id, m.eot_id
        try:
            out = txt(tokens)
        except EngineDirError:
            raise ManifestError(f"{self.engine_dir / 'manifest.json'}: context_length {m.context_length} does not "
                                f"fit {text_file.name} (it fails on a full-length input)") from None
        if out.shape != (1, m.embed_dim) or not np.isfinite(out).all() or abs(float(np.linalg.norm(out)) - 1) > 1e-2:
            raise EngineDirError(f"{text_file}: a full-length dry run gave {out.shape} values that are not an "
                                 f"L2-normalised [1, {m.embed_dim}] embedding")

    @property
    def dim(self) -> int:
        """The embedding size D (the manifest's `embed_dim`)."""
        return int(self.manifest.embed_dim)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Embed texts with the text tower, `batch_size` at a time, each batch padded to its longest text.

        Args:
            texts: the texts (one string counts as a list of one). A text longer than the context length
                is cut to it, with a warning.

        Returns:
            float32 [N, D], L2-normalised, in the order of `texts`.

        Raises:
            QueryError: an empty or non-UTF-8 text.
            EngineDirError: the tower fails to run.
        """
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise QueryError("query text is empty")
            require_utf8(t, "query text")
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i : i + self.batch_size]
            tokens, truncated = self.tokenizer.encode(chunk)
            for j in truncated:
                warnings.warn(f"text of more than {self.manifest.context_length} tokens truncated: "
                              f"{chunk[j][:60]!r}...", stacklevel=2)
            out.append(self._text(tokens))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images) -> np.ndarray:
        """Images as BGR uint8 arrays or paths (unreadable paths raise; the gallery skips them first).

        Args:
            images: a list of paths or BGR uint8 arrays ([h, w], [h, w, 3] or [h, w, 4]), any size:
                each is resized and normalised as at training (`preprocess.to_input`).

        Returns:
            float32 [N, D], L2-normalised, in the order of `images`.

        Raises:
            QueryError: a path that cannot be read as an image, or an array that is not a picture.
            EngineDirError: the tower fails to run.
        """
        from sen_infer.engine.preprocess import check_image_array, read_bgr

        m = self.manifest
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = []
            for item in images[i : i + self.batch_size]:
                img = read_bgr(str(item)) if isinstance(item, (str, os.PathLike)) else item
                if img is None:
                    raise QueryError(f"cannot read image {item}")
                check_image_array(img)
                batch.append(to_input(img, m.image_size, m.mean, m.std))
            out.append(self._image(np.stack(batch)))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def encode_inputs(self, x: np.ndarray) -> np.ndarray:
        """Already preprocessed images (float32 [N, 3, H, W], `preprocess.to_input`) -> float32 [N, D].

        The ingest's path: crops are preprocessed where they are cut, and embedded in batches later.

        Args:
            x: float32 [N, 3, H, W] at the manifest's `image_size`, normalised with its mean and std.

        Returns:
            float32 [N, D], L2-normalised.

        Raises:
            EngineDirError: the tower fails to run (inputs of another size, for one).
        """
        out = [self._image(np.ascontiguousarray(x[i : i + self.batch_size], np.float32))
               for i in range(0, len(x), self.batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
