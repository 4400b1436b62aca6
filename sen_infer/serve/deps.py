"""FastAPI dependencies: the shared `Service`, and the role a route needs, visible in its signature.

    def cameras(svc: ServiceDep, caller: ViewerKey): ...   # any valid key (or none without keys)
    def audit(svc: ServiceDep, caller: AdminKey): ...      # an admin key

A role dependency returns the caller's `Key` (None on a service without keys, where loopback is trusted).
The key itself was found by the `Authenticate` middleware before the body was read; the dependency checks
the role. It is `async` so that it runs on the event loop rather than taking a worker thread per request.
"""

from __future__ import annotations

from typing import Annotated, Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sen_infer.serve.auth import ROLES, Key
from sen_infer.serve.errors import Forbidden, Unauthorized
from sen_infer.serve.service import Service


async def service(request: Request) -> Service:
    """The app's `Service` (`app.state.service`), so routes reach the shared state through a dependency
    and a test can build an app around any Service it likes."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(service)]

# Declares the scheme in the OpenAPI schema (the docs' Authorize button). The header itself is checked by
# `require`, so a malformed one is a 401 like a missing one, and every refusal is audited.
bearer = HTTPBearer(auto_error=False, description="an API key from `python -m sen_infer keys add`")


def require(role: str) -> Callable[..., Awaitable[Key | None]]:
    """The dependency that admits a request only with a key of `role` (admin may do what a viewer may).

    Refusals are audited here, since no route handler runs for them (a missing key is refused, and
    audited, by the `Authenticate` middleware before this runs).

    Args:
        role: "viewer" or "admin".

    Returns:
        An async dependency returning the caller's `Key`, or None when the service has no keys.

    Raises:
        ValueError: an unknown role (a programming error, raised when the routes are defined).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def check(request: Request, svc: ServiceDep,
                    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Key | None:
        if not svc.gate.enabled:
            return None
        key = getattr(request.state, "key", None)  # found by the Authenticate middleware, before the body
        if key is None:  # only a route outside /api/v1 could get here; the middleware refuses the rest
            svc.audit_refusal(request.client.host if request.client else None, request.url.path, 401, who="-")
            raise Unauthorized("a valid API key is required: send the header 'Authorization: Bearer KEY'")
        if role == "admin" and key.role != "admin":
            svc.audit_request(request, key, 403)
            raise Forbidden(f"key {key.name!r} has the role {key.role}; this needs admin")
        return key

    check.__name__ = f"require_{role}"
    return check


ViewerKey = Annotated[Key | None, Depends(require("viewer"))]
AdminKey = Annotated[Key | None, Depends(require("admin"))]
