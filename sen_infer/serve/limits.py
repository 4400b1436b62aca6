"""Request-size limits, applied before any handler reads a body (an ASGI middleware)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.exceptions import HTTPException


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Documented in docs/serve.md; shown by GET /api/v1/info."""
    max_body: int = 64 * 1024  # a JSON request: a query is a few hundred bytes
    max_upload: int = 8 * 1024 * 1024  # an image upload ("find by example")
    max_text: int = 1000  # characters of a text query (the model reads 77 tokens of it)
    max_k: int = 200  # hits per request
    max_cameras: int = 256  # cameras named in one filter
    max_audit: int = 1000  # audit lines per GET /audit


class BodyTooLarge(HTTPException):
    """Raised while a body streams in past its limit: a 413. An HTTPException, because FastAPI turns any
    other exception raised while it reads a body into a 400."""

    def __init__(self, limit: int, path: str):
        super().__init__(413, f"request body over the limit of {limit} bytes for {path}")

    def __str__(self) -> str:
        return str(self.detail)


class BodyLimit:
    """413 for a body over its limit: refused on its Content-Length, or cut off while it streams in
    (chunked uploads state no length). `upload_paths` get the upload limit, every other path max_body."""

    def __init__(self, app, limits: Limits, upload_paths: tuple[str, ...]):
        self.app, self.limits, self.upload_paths = app, limits, upload_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.max_upload if scope["path"] in self.upload_paths else self.limits.max_body
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                return await _reply(send, 400, "Content-Length is not a number")
            if too_big:
                return await _reply(send, 413, f"request body over the limit of {limit} bytes for {scope['path']}")
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, scope["path"])
            return message

        async def watched(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as e:  # only when no handler of the app answered it
            if not started:
                await _reply(send, 413, str(e))


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
