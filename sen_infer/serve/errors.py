"""The service's own exception types: one per way it refuses a request, each with its HTTP status.

They derive from `sen_infer.errors.SenInferError` like the SDK's, so one error handler answers all of
them as {"error": "one line"} (`handlers.py`), and `status_of` is the one place that maps an exception to
its HTTP status. The SDK's errors that reach a route keep their meaning: `UnknownKey` is a 404,
`QueryError` a 400, `GalleryError` and `BackendUnavailable` a 503.

This module imports neither FastAPI nor Starlette: `auth.py` (the key file, used by the `keys` command)
takes `AccessError` from here. `limits.BodyTooLarge` is the one refusal that is not here, because FastAPI
must see it as its own HTTPException while it reads a body (see its docstring).
"""

from __future__ import annotations

from sen_infer.errors import BackendUnavailable, GalleryError, QueryError, SenInferError, UnknownKey


class AccessError(SenInferError):
    """A key file that cannot be read or written, or a service that would be open to the network.

    Raised while the service starts (the CLI prints it as `error: ...`), never for a request.
    """


class ServiceError(SenInferError):
    """A request the service refuses; subclasses name the reason and carry its HTTP `status`.

    `headers` are sent with the error response (a 401 names the auth scheme).
    """

    status: int = 400
    headers: dict[str, str] | None = None


class LimitExceeded(ServiceError):
    """A request over one of the service's own limits (`Limits`: query length, hits, cameras, audit
    lines); the SDK would answer it, but one operator must not tie up the shared model and gallery."""

    status = 400


class UploadError(ServiceError):
    """An upload that cannot be searched with: empty, truncated, undecodable, or without its file."""

    status = 400


class UnsupportedUpload(UploadError):
    """A picture that is neither JPEG nor PNG, or a request body that is neither JSON nor a form."""

    status = 415


class PictureTooLarge(UploadError):
    """A picture whose header states more pixels than any camera frame has (a decompression bomb)."""

    status = 413


class FormFieldError(UploadError):
    """A form field of an upload that is unknown, repeated or malformed: refused, so that a typo never
    widens a search silently."""

    status = 422


class Unauthorized(ServiceError):
    """A request without a valid API key where the service has keys."""

    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    """A valid key whose role is not enough for the route (a viewer reading the audit log)."""

    status = 403


class FrameUnavailable(ServiceError):
    """The source of a row can no longer give its frame or crop (moved, deleted, replaced, undecodable):
    410 Gone, because the evidence was there once and is not coming back."""

    status = 410


class Busy(ServiceError):
    """Work the server has no room for now (uploads being decoded fill the memory budget): a 503 with
    Retry-After, so a client backs off instead of the server swapping."""

    status = 503
    headers = {"Retry-After": "1"}


class NotReady(ServiceError):
    """The readiness probe's answer when the gallery cannot be read: the service should get no traffic."""

    status = 503


def status_of(error: Exception) -> int:
    """The HTTP status of an error a route raised.

    Args:
        error: a `ServiceError`, an SDK `SenInferError`, or anything else.

    Returns:
        The service error's own status; 404 for an unknown row key, 503 for a gallery or backend that
        cannot serve, and 400 for any other request the SDK refused.
    """
    if isinstance(error, ServiceError):
        return error.status
    if isinstance(error, UnknownKey):
        return 404
    if isinstance(error, QueryError):
        return 400
    if isinstance(error, (GalleryError, BackendUnavailable)):
        return 503
    return 400
