"""The error handlers: every answer that is not a success is JSON {"error": "one line"}, and no traceback
leaves the service (an unexpected exception is logged here and answered with a 500).

A search refused before its handler ran (a malformed or invalid body, a body over the limit) is audited
here; a search refused by its handler is audited by the handler, with what was searched for.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from sen_infer.errors import SenInferError
from sen_infer.serve.errors import status_of
from sen_infer.serve.bodies import BodyTooLarge
from sen_infer.serve.schemas import API

log = logging.getLogger("sen_infer.serve")


def install_handlers(app: FastAPI) -> None:
    """Registers the service's error handlers on `app`.

    Args:
        app: the FastAPI app; its `state.service` is the `Service` that audits refusals.
    """
    app.add_exception_handler(SenInferError, sdk_error)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, aborted)
    app.add_exception_handler(Exception, crash)


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The one shape of every error answer: {"error": message} with `status`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def sdk_error(request: Request, e: SenInferError) -> JSONResponse:
    """An SDK or service error raised by a route or a dependency: its status (`status_of`) and one line."""
    return error_response(status_of(e), str(e), getattr(e, "headers", None))


async def too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
    """A body that grew past its limit while a handler read it: a 413, audited on a search route."""
    audit_refused(request, 413, str(e))
    return error_response(413, str(e))


async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
    """A body, path or query parameter that does not fit its schema: one line, audited on a search route."""
    status, line = validation_line(e.errors())
    audit_refused(request, status, line)
    return error_response(status, line)


async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (no such route, method not allowed, a form it cannot parse) as one line."""
    if isinstance(e.__cause__, ClientDisconnect):  # FastAPI's "error parsing the body": the client left
        return await aborted(request, e.__cause__)
    if e.status_code in (400, 408, 413):  # a body that could not be read, parsed or received in time
        audit_refused(request, e.status_code, str(e.detail))
    return error_response(e.status_code, str(e.detail), getattr(e, "headers", None))


async def aborted(request: Request, e: ClientDisconnect) -> JSONResponse:
    """The client went away before its body was in (an upload cancelled mid-way): audited as aborted, with
    no traceback, since nothing is wrong with the server. The answer is never read."""
    audit_refused(request, 499, "aborted by the client before its request body was complete")
    return error_response(499, "aborted")


async def crash(request: Request, e: Exception) -> JSONResponse:
    """A bug: logged with its traceback for the operator, a plain 500 for the client."""
    log.exception("unhandled error on %s", request.url.path)
    return error_response(500, "internal error; the server log has the details")


def audit_refused(request: Request, status: int, line: str) -> None:
    """A search refused before its handler ran is audited too (the key, if the role check saw one)."""
    if request.url.path.startswith(f"{API}/query"):
        svc = request.app.state.service
        key = getattr(request.state, "key", None)
        svc.audit_request(request, key, status, who="-" if key is None and svc.gate.enabled else None, error=line)


def validation_line(errors) -> tuple[int, str]:
    """A pydantic error list as (status, one line): malformed JSON is a 400, a wrong field a 422.

    Args:
        errors: `RequestValidationError.errors()` (or pydantic's `ValidationError.errors()`).

    Returns:
        The status and the line naming the first error and how many more there are.
    """
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON body: {first.get('ctx', {}).get('error', 'cannot parse it')}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{where}: {first.get('msg', 'invalid')}{more}"
