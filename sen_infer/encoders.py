"""Text and image encoders over an engine dir, on the fastest backend available.

Backends: "tensorrt" (fp16 plans, GPU), "onnx-cuda" (onnxruntime-gpu), "onnx-cpu" (fp32) and
"onnx-cpu-int8" (dynamic int8). "auto" takes the first available in that order.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from sen_infer.errors import BackendUnavailable, EngineDirError, QueryError
from sen_infer.manifest import Manifest, ManifestError, read_manifest
from sen_infer.preprocess import to_input
from sen_infer.tokenizer import ClipTokenizer, TokenizerError

BACKENDS = ("tensorrt", "onnx-cuda", "onnx-cpu-int8", "onnx-cpu")
FILES = {
    "onnx-cuda": ("image_encoder.onnx", "text_encoder.onnx"),
    "onnx-cpu": ("image_encoder.onnx", "text_encoder.onnx"),
    "onnx-cpu-int8": ("image_encoder.int8.onnx", "text_encoder.int8.onnx"),
    "tensorrt": ("image_encoder.fp16.plan", "text_encoder.fp16.plan"),
}


class _OrtTower:
    def __init__(self, path: Path, providers: list[str]):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]


class _TrtTower:
    """A TensorRT plan run through cuda-python buffers (no torch). Unverified: no GPU here."""

    def __init__(self, path: Path):
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self.trt, self.cudart = trt, cudart
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        cudart = self.cudart
        x = np.ascontiguousarray(x)
        self.context.set_input_shape(self.input, x.shape)
        out = np.empty(tuple(self.context.get_tensor_shape(self.output)), np.float32)
        _, d_in = cudart.cudaMalloc(x.nbytes)
        _, d_out = cudart.cudaMalloc(out.nbytes)
        try:
            cudart.cudaMemcpy(d_in, x.ctypes.data, x.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            self.context.set_tensor_address(self.input, d_in)
            self.context.set_tensor_address(self.output, d_out)
            if not self.context.execute_async_v3(0):
                raise RuntimeError("TensorRT execution failed")
            cudart.cudaMemcpy(out.ctypes.data, d_out, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        finally:
            cudart.cudaFree(d_in)
            cudart.cudaFree(d_out)
        return out


def _available(backend: str, engine_dir: Path) -> str | None:
    """None when `backend` can run here, else the reason it cannot."""
    missing = [f for f in FILES[backend] if not (engine_dir / f).is_file()]
    if missing:
        return f"{', '.join(missing)} not in {engine_dir}"
    if backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
            from cuda.bindings import runtime  # noqa: F401
        except ImportError:
            return "tensorrt / cuda-python are not installed"
        return None
    import onnxruntime as ort

    if backend == "onnx-cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu instead of onnxruntime)"
    return None


def open_engine(engine_dir: str | os.PathLike) -> tuple[Manifest, ClipTokenizer]:
    engine_dir = Path(engine_dir)
    if not engine_dir.is_dir():
        raise EngineDirError(f"engine dir {engine_dir} does not exist (create one with python -m export.onnx)")
    try:
        manifest = read_manifest(engine_dir)
        tokenizer = ClipTokenizer(engine_dir / "tokenizer.json", manifest.context_length)
    except (ManifestError, TokenizerError) as e:
        raise EngineDirError(str(e)) from None
    return manifest, tokenizer


class Encoders:
    """The two towers of an engine dir. `encode_text` and `encode_images` return float32 [N, D]."""

    def __init__(self, engine_dir: str | os.PathLike, backend: str = "auto", batch_size: int = 32):
        self.engine_dir = Path(engine_dir)
        self.manifest, self.tokenizer = open_engine(self.engine_dir)
        self.batch_size = batch_size
        if backend == "auto":
            reasons = {b: _available(b, self.engine_dir) for b in BACKENDS}
            backend = next((b for b in BACKENDS if reasons[b] is None), None)
            if backend is None:
                raise EngineDirError(f"{self.engine_dir}: no usable towers ({reasons['onnx-cpu']})")
        elif backend not in BACKENDS:
            raise BackendUnavailable(f"unknown backend {backend!r} (choose from auto, {', '.join(BACKENDS)})")
        else:
            reason = _available(backend, self.engine_dir)
            if reason:
                raise BackendUnavailable(f"backend {backend} is unavailable: {reason}")
        self.backend = backend
        image_file, text_file = (self.engine_dir / f for f in FILES[backend])
        if backend == "tensorrt":
            self._image, self._text = _TrtTower(image_file), _TrtTower(text_file)
        else:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if backend == "onnx-cuda" \
                else ["CPUExecutionProvider"]
            self._image, self._text = _OrtTower(image_file, providers), _OrtTower(text_file, providers)

    @property
    def dim(self) -> int:
        return int(self.manifest.embed_dim)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise QueryError("query text is empty")
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
        """Images as BGR uint8 arrays or paths (unreadable paths raise; the gallery skips them first)."""
        from sen_infer.preprocess import read_bgr

        m = self.manifest
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = []
            for item in images[i : i + self.batch_size]:
                img = read_bgr(str(item)) if isinstance(item, (str, os.PathLike)) else item
                if img is None:
                    raise QueryError(f"cannot read image {item}")
                batch.append(to_input(img, m.image_size, m.mean, m.std))
            out.append(self._image(np.stack(batch)))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
