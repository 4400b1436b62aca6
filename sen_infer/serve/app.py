"""The search service's ASGI app: FastAPI routes over one `Retriever`, under /api/v1, plus the search page
at /. This module only assembles it; a newcomer's map of the package:

    config.py    ServeConfig: what to serve, and how          service.py  Service: the state routes share
    schemas.py   request and response bodies (OpenAPI)        deps.py     the Service and role dependencies
    errors.py    one exception per refusal, its HTTP status   handlers.py errors as {"error": "one line"}
    routes/      one router per resource: query, evidence, gallery, audit, health, pages
    auth.py, audit.py, limits.py, origin.py, frames.py, images.py: keys, the audit log, request limits,
    same-origin checks, frames from the source videos, uploaded pictures; run.py runs it under uvicorn.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from sen_infer.serve.config import ServeConfig
from sen_infer.serve.handlers import install_handlers
from sen_infer.serve.authenticate import Authenticate
from sen_infer.serve.bodies import BodyLimit
from sen_infer.serve.origin import LOOPBACK_NAMES, SameOrigin
from sen_infer.serve.routes import ROUTERS
from sen_infer.serve.routes.pages import mount_files
from sen_infer.serve.routes.query import UPLOAD_PATH
from sen_infer.serve.schemas import ErrorOut
from sen_infer.serve.service import Service, version

__all__ = ["create_app"]


@asynccontextmanager
async def _lifespan(app: FastAPI):
    """On a graceful stop: the refusals counted but not yet summarised are written to the audit log, and
    the decoding threads finish what they hold."""
    yield
    svc = app.state.service
    svc.refusals.flush(everything=True)
    svc.decoder.close()


def create_app(config: ServeConfig, service: Service | None = None):
    """The service as an ASGI app, wrapped in the body-size limit and the same-origin check.

    Args:
        config: what to serve and how.
        service: the shared state to serve; by default one is opened from `config` now (engine and
            gallery), so a server that starts is one that can answer.

    Returns:
        The ASGI app (`SameOrigin(Authenticate(BodyLimit(FastAPI)))`); the FastAPI app is `.app.app.app`.

    Raises:
        AccessError: no key file off loopback, or an unusable key file or audit log.
        SenInferError: an engine or gallery that cannot be opened.
    """
    svc = service or Service(config)
    app = FastAPI(title="SEN person search", version=version(), docs_url=None, redoc_url=None, lifespan=_lifespan,
                  openapi_url="/openapi.json",
                  responses={status: {"model": ErrorOut, "description": text} for status, text in ERRORS.items()},
                  description="Text-based person search over a gallery of camera crops. "
                              "Send `Authorization: Bearer KEY` when the service has keys.")
    app.state.service = svc
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    mount_files(app)
    hosts = LOOPBACK_NAMES if not svc.gate.enabled else None  # without keys, loopback names only
    # outermost first: browser isolation, then the key (before any body is read), then the body's limits
    limited = BodyLimit(app, svc.limits, upload_paths=(UPLOAD_PATH,), on_refused=svc.audit_early)
    return SameOrigin(Authenticate(limited, svc), hosts)


# Every error status the service can send, declared on every route of the OpenAPI schema (a route may not
# send all of them: a probe never sends 401), each as {"error": "one line"}.
ERRORS = {400: "a malformed or meaningless request", 401: "no valid API key", 403: "a foreign origin or site, "
          "or a key whose role is not enough", 404: "no such row or route", 408: "the body did not arrive in time",
          410: "the evidence is gone from its source", 413: "a body or picture over its limit",
          415: "neither JSON nor a form, or a picture neither JPEG nor PNG", 422: "a field that does not fit "
          "its schema", 500: "a bug (the server log has it)", 503: "busy (see Retry-After), or a gallery that "
          "cannot be read"}
