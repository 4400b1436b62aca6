"""The model side of the SDK: the engine dir's manifest (verified on load), the CLIP tokenizer, image
preprocessing, and the two encoder towers on onnxruntime or TensorRT (`Encoders`)."""

from sen_infer.engine.encoders import Encoders
from sen_infer.engine.manifest import Manifest, read_manifest
from sen_infer.engine.tokenizer import ClipTokenizer

__all__ = ["Encoders", "Manifest", "read_manifest", "ClipTokenizer"]
