"""The SDK's exception types: each names what is wrong in one line.

Every error sen_infer raises on bad input derives from `SenInferError`; the CLI catches exactly that
and prints `error: <message>` with exit code 2. Any other exception reaching a user is a bug.
The older types keep their second base (ValueError / OSError) so callers that caught those still do.
"""


class SenInferError(Exception):
    """Base class of every error sen_infer raises on purpose.

    Catch it to handle any bad input in one place: the CLI prints it as `error: <message>` and exits 2,
    the service answers it as {"error": "<message>"} with the status `serve.errors.status_of` gives it.
    """


class EngineDirError(SenInferError):
    """An engine dir that is missing, incomplete, tampered with or not an engine dir.

    Raised when `Encoders` (so `Retriever`) opens one, naming the file at fault: a sha256 that differs
    from the manifest, a tower whose inputs or outputs do not match it, TensorRT plans built for another
    TensorRT or GPU. Re-export the engine dir rather than skipping the check.
    """


class ManifestError(EngineDirError, ValueError):
    """A manifest that is missing, malformed, out of range or of an unsupported format version."""


class TokenizerError(EngineDirError, ValueError):
    """A tokenizer file that is missing or is not a CLIP tokenizer."""


class BackendUnavailable(SenInferError):
    """A requested backend (TensorRT, onnxruntime CUDA, int8 files) cannot run here.

    Raised only for a backend named explicitly (or an unknown name): "auto" takes the next one instead.
    """


class DetectorUnavailable(SenInferError):
    """The neural person detector cannot be used: its package is not installed, or its graph is not the
    pinned one (raised by `sen_infer.vision.ssdlite` when a detector is made, before any video is read)."""


class GalleryError(SenInferError):
    """A gallery that cannot be opened, read or written.

    Also SQLite's errors, as one line saying what was being done, and what a gallery kind cannot do
    (`GalleryLike.capabilities`): a sharded root's `link_identities`, for one.
    """


class ModelMismatchError(GalleryError):
    """A gallery built with another model than the engine's: its embeddings would be garbage here.

    Raised on open when the gallery's model fingerprint or embedding size differs from the encoders'.
    Open it with the engine dir it was built with, or ingest into a new gallery.
    """


class SourceConflict(GalleryError):
    """A batch refused because its source changed under it (replaced while being ingested, or stored at
    the same moment with other content by another ingest). Nothing of the batch was stored.

    The ingest methods catch it and record the file in `IngestReport.failed`; a caller sees it only from
    `VectorStore.add_embeddings`. Ingesting the file again stores its current content.
    """


class DuplicateContent(SourceConflict):
    """A first commit refused because another ingest stored the same content under another name first
    (two copies of one recording ingested at once by two processes). Nothing of the batch was stored; the
    ingest methods record the name as an alias of `twin` instead.

    Args:
        twin: the source key that holds the content. path: the name this ingest read it from.
    """

    def __init__(self, twin: str, twin_path: str | None, path: str | None):
        super().__init__(f"{path}: the same content was stored as {twin_path or twin} by another ingest "
                         f"at the same time")
        self.twin, self.twin_path, self.path = twin, twin_path, path


class QueryError(SenInferError, ValueError):
    """A query that cannot be answered (empty or non-UTF-8 text, bad filter, unwritable sheet).

    Raised before any search runs (`query.check_filters` is the one validator of k and filters); also a
    ValueError, for callers that catch that.
    """


class UnknownKey(QueryError, KeyError):
    """A row key that is not in the gallery (never stored, removed, or damaged and no longer served).

    The one answer for a missing key from the store up to the service's 404; also a KeyError, for
    callers that catch that (its message is printed unquoted).
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class IngestError(SenInferError, ValueError):
    """Ingest arguments that cannot work for any source (stride, timestamps, camera name).

    Raised before anything is stored. A problem with one source (unreadable, replaced while read) is
    not raised but recorded in the `IngestReport`, and the other sources go on.
    """


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
