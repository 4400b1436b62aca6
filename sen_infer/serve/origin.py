"""Who may talk to the service from a browser: requests whose Host is not the address served (DNS
rebinding: a web page whose name was re-pointed at 127.0.0.1) and cross-site requests (an Origin that is
not the service's own) are refused, so a page the operator happens to visit cannot search the gallery
or read its footage through the operator's browser. Clients that are not browsers send no Origin."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _host_only(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8080
        return value[1:value.index("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SameOrigin:
    """ASGI middleware. `hosts`: the names a request's Host may carry (None: any, for a service bound to
    a public address behind a proxy, where keys guard it); an Origin header must name the Host it came to."""

    def __init__(self, app, hosts: tuple[str, ...] | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and _host_only(host) not in self.hosts:
            return await _refuse(send, f"Host {host!r} is not this service's address; open it as "
                                       f"http://127.0.0.1:PORT/")
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            parts = urlsplit(origin)
            if parts.netloc.lower() != host.lower():
                return await _refuse(send, f"cross-site request from {origin} refused")
        elif origin == "null":
            return await _refuse(send, "request from an opaque origin refused")
        return await self.app(scope, receive, send)


async def _refuse(send, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
