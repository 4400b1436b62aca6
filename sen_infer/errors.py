"""The SDK's exception types: each names what is wrong in one line."""


class SenInferError(Exception):
    """Base class of every error sen_infer raises on purpose."""


class EngineDirError(SenInferError):
    """An engine dir that is missing, incomplete or not an engine dir."""


class BackendUnavailable(SenInferError):
    """A requested backend (TensorRT, onnxruntime CUDA, int8 files) cannot run here."""


class GalleryError(SenInferError):
    """A gallery that cannot be opened or written."""


class ModelMismatchError(GalleryError):
    """A gallery built with another model than the engine's: its embeddings would be garbage here."""


class QueryError(SenInferError):
    """A query that cannot be answered (e.g. empty text)."""
