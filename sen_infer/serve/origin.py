"""Who may talk to the service from a browser, and what a browser may do with its answers.

- Requests whose Host is not the address served are refused (DNS rebinding: a web page whose name was
  re-pointed at 127.0.0.1).
- Cross-site requests are refused: an Origin that is not the service's own, and anything a browser marks
  `Sec-Fetch-Site: cross-site` or `same-site` (an `<img>` of another site pointing at a crop sends no Origin,
  but does send that), except a plain navigation to the page. A page the operator happens to visit can
  neither search the gallery nor read its footage, nor learn which keys exist from an image's size.
- Every answer carries `Cross-Origin-Resource-Policy: same-origin` and `nosniff`; every HTML answer a
  Content-Security-Policy with `frame-ancestors 'none'` and `X-Frame-Options: DENY` (no clickjacking).

Clients that are not browsers send neither Origin nor Sec-Fetch-*, and are unaffected.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PAGES = ("/", "/docs")  # what a link on another site may open (a top-level navigation, never framed)
# The page loads its own script and style only; images are blob: URLs made from authorised fetches.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
ALWAYS = [(b"cross-origin-resource-policy", b"same-origin"), (b"x-content-type-options", b"nosniff"),
          (b"referrer-policy", b"no-referrer")]
HTML = [(b"x-frame-options", b"DENY")]


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
        refusal = self.refusal(scope, headers)
        if refusal:
            return await _refuse(send, refusal)
        return await self.app(scope, receive, _isolated(send))

    def refusal(self, scope, headers: dict) -> str | None:
        """Why a request is refused (one line), or None when it may go on."""
        host = headers.get("host", "")
        if self.hosts is not None and _host_only(host) not in self.hosts:
            return f"Host {host!r} is not this service's address; open it as http://127.0.0.1:PORT/"
        origin = headers.get("origin")
        if origin == "null":
            return "request from an opaque origin refused"
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return f"cross-site request from {origin} refused"
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site"):
            navigation = headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-dest") == "document"
            if not (navigation and scope["method"] == "GET" and scope["path"] in PAGES):
                return f"{site} request refused: open the service's own page"
        return None


def _isolated(send):
    """`send` that adds the isolation headers to the response's start."""
    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {k.lower() for k, _ in headers}
            extra = [h for h in ALWAYS if h[0] not in names]
            kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if kind.startswith(b"text/html"):
                extra += [h for h in HTML if h[0] not in names]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
            message = {**message, "headers": headers + extra}
        await send(message)
    return wrapped


async def _refuse(send, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                + ALWAYS})
    await send({"type": "http.response.body", "body": body})
