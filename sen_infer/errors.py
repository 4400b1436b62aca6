"""The SDK's exception types: each names what is wrong in one line.

Every error sen_infer raises on bad input derives from `SenInferError`; the CLI catches exactly that
and prints `error: <message>` with exit code 2. Any other exception reaching a user is a bug.
The older types keep their second base (ValueError / OSError) so callers that caught those still do.
"""


class SenInferError(Exception):
    """Base class of every error sen_infer raises on purpose."""


class EngineDirError(SenInferError):
    """An engine dir that is missing, incomplete, tampered with or not an engine dir."""


class ManifestError(EngineDirError, ValueError):
    """A manifest that is missing, malformed, out of range or of an unsupported format version."""


class TokenizerError(EngineDirError, ValueError):
    """A tokenizer file that is missing or is not a CLIP tokenizer."""


class BackendUnavailable(SenInferError):
    """A requested backend (TensorRT, onnxruntime CUDA, int8 files) cannot run here."""


class GalleryError(SenInferError):
    """A gallery that cannot be opened, read or written."""


class ModelMismatchError(GalleryError):
    """A gallery built with another model than the engine's: its embeddings would be garbage here."""


class SourceConflict(GalleryError):
    """A batch refused because its source changed under it (replaced while being ingested, or stored at
    the same moment with other content by another ingest). Nothing of the batch was stored."""


class QueryError(SenInferError, ValueError):
    """A query that cannot be answered (empty or non-UTF-8 text, bad filter, unwritable sheet)."""


class UnknownKey(QueryError, KeyError):
    """A row key that is not in the gallery (never stored, removed, or damaged and no longer served)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class IngestError(SenInferError, ValueError):
    """Ingest arguments that cannot work for any source (stride, timestamps, camera name)."""


class DetectionsError(IngestError):
    """A detections file (MOT format) that is missing or not MOT rows."""


class VideoReadError(SenInferError, OSError):
    """A video OpenCV cannot open or decode (the ingest skips it and reports it)."""


def require_utf8(value: str, what: str, error: type[SenInferError] = QueryError) -> str:
    """`value` unchanged, or `error` when it holds undecodable bytes (surrogate escapes from argv or
    os.listdir). OpenCV segfaults on such strings and SQLite refuses them, so they stop here."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:  # show the raw bytes the way a shell would have passed them: 'caf\xe9'
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            shown = value.encode("utf-8", "backslashreplace").decode()
        raise error(f"{what} is not valid UTF-8: {shown}") from None
    return value
