"""Authentication before anything else: an ASGI middleware that checks the API key of every /api/v1
request (the probes excepted) before a byte of its body is read or parsed. A request without a valid key is
refused with a 401 whatever its body, so malformed JSON from a stranger is a 401 (not a 400), and every
audited request knows who sent it. The role a route needs is checked later, by its dependency (`deps.py`).
"""

from __future__ import annotations

import json

from sen_infer.serve.schemas import API

PUBLIC = (f"{API}/healthz", f"{API}/readyz")  # the probes tell nothing about the footage
UNAUTHORIZED = "a valid API key is required: send the header 'Authorization: Bearer KEY'"


class Authenticate:
    """ASGI middleware: on a service with keys, an /api/v1 request must present a valid key; the key found
    is put in the request's state (`request.state.key`) for the role check and the audit line.

    Args:
        app: the app behind it.
        service: the `Service` (its gate identifies keys; its audit records refusals).
    """

    def __init__(self, app, service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.service.gate.enabled or not _guarded(scope["path"]):
            return await self.app(scope, receive, send)
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        key = self.service.gate.identify(header)
        if key is None:
            client = scope.get("client")
            self.service.audit_refusal(client[0] if client else None, scope["path"], 401, who="-")
            return await _unauthorized(send)
        scope.setdefault("state", {})["key"] = key
        return await self.app(scope, receive, send)


def _guarded(path: str) -> bool:
    return (path == API or path.startswith(API + "/")) and path not in PUBLIC


async def _unauthorized(send) -> None:
    body = json.dumps({"error": UNAUTHORIZED}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})
