"""Request bodies, bounded before any handler reads them (an ASGI middleware): a body over its size limit
is a 413, a body not all in by its deadline a 408 and a closed connection. One slow or greedy client must
not hold a worker, a socket or memory that other operators need."""

from __future__ import annotations

import asyncio
import json
import time

from starlette.exceptions import HTTPException

from sen_infer.serve.limits import Limits


class BodyTooLarge(HTTPException):
    """Raised while a body streams in past its limit: a 413. An HTTPException, because FastAPI turns any
    other exception raised while it reads a body into a 400."""

    def __init__(self, limit: int, path: str):
        super().__init__(413, f"request body over the limit of {limit} bytes for {path}")

    def __str__(self) -> str:
        return str(self.detail)


class BodyTimeout(HTTPException):
    """Raised when a body is not all in by its deadline (`Limits.body_timeout`): a 408, and the connection
    is closed, so a client sending one byte a second holds nothing for long."""

    def __init__(self, seconds: float, path: str):
        super().__init__(408, f"request body not received within {seconds:g} s for {path}",
                         headers={"Connection": "close"})

    def __str__(self) -> str:
        return str(self.detail)


class BodyLimit:
    """413 for a body over its limit: refused on its Content-Length, or cut off while it streams in
    (chunked uploads state no length); 408 for a body not in by its deadline. `upload_paths` get the upload
    limit, every other path max_body."""

    def __init__(self, app, limits: Limits, upload_paths: tuple[str, ...], on_refused=None):
        self.app, self.limits, self.upload_paths = app, limits, upload_paths
        self.on_refused = on_refused  # (scope, status, line): audits a refusal made here, before FastAPI

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.max_upload if scope["path"] in self.upload_paths else self.limits.max_body
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            refusal = None
            if not length.isdigit():
                refusal = 400, "Content-Length is not a number"
            elif int(length) > limit:
                refusal = 413, f"request body over the limit of {limit} bytes for {scope['path']}"
            if refusal:
                if self.on_refused is not None:
                    self.on_refused(scope, *refusal)
                return await _reply(send, *refusal)
        seen, started, body_done = 0, False, False
        deadline = time.monotonic() + self.limits.body_timeout

        async def counted():
            nonlocal seen, body_done
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                raise BodyTimeout(self.limits.body_timeout, scope["path"]) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, scope["path"])
                body_done = not message.get("more_body", False)
            return message

        async def watched(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except (BodyTooLarge, BodyTimeout) as e:  # only when no handler of the app answered it
            if not started:
                await _reply(send, e.status_code, str(e))


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
