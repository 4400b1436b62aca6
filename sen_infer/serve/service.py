"""The service's state, which every route shares: one `Retriever` and its gallery, the key gate, the audit
log and the frame cache. `create_app` makes one `Service` and keeps it in `app.state.service`; routes get
it through the `ServiceDep` dependency (`deps.py`), never through a closure or a global.
"""

from __future__ import annotations

import time
from pathlib import Path

from starlette.requests import Request

from sen_infer.errors import UnknownKey
from sen_infer.query import Retriever, check_filters
from sen_infer.serve.audit import AuditLog, RefusalBudget
from sen_infer.serve.auth import Gate, Key, gate_for
from sen_infer.serve.config import ServeConfig
from sen_infer.serve.errors import AccessError, FrameUnavailable, LimitExceeded
from sen_infer.serve.frames import FrameRenderer
from sen_infer.serve.images import Decoder
from sen_infer.serve.schemas import API, Filters
from sen_infer.store import Row


class Service:
    """What the routes share. Opening it opens the engine and the gallery, so a server that starts is
    one that can answer; the SDK is thread-safe, so one instance serves every request."""

    def __init__(self, config: ServeConfig):
        self.config, self.limits = config, config.limits
        self.gate: Gate = gate_for(config.host, config.keys)
        if config.trusted_proxies and config.keys is None:
            raise AccessError("--trusted-proxy needs --keys: behind a proxy every request arrives from loopback, "
                              "which a service without keys trusts (docs/serve.md, Behind a reverse proxy)")
        self.retriever = Retriever(config.engine, gallery=config.gallery, backend=config.backend, verify=config.verify)
        self.gallery = self.retriever.open_gallery(create=False)  # serving a path with no gallery is an error
        self.audit = AuditLog(config.audit if config.audit is not None else self.gallery.dir / "audit.jsonl",
                              max_bytes=config.audit_max_mb << 20, keep=config.audit_keep)
        self.refusals = RefusalBudget(self.audit)
        self.frames = FrameRenderer(config.frame_cache)
        self.decoder = Decoder(self.limits.decode_workers, self.limits.decode_budget_mb << 20)
        self.started = time.time()

    def filters(self, f: Filters) -> dict:
        """A search's filters after the service's own limits, as keyword arguments of a `Retriever` query.

        Args:
            f: the filters of the request.

        Returns:
            k, camera, since, until, per_track and min_quality; an empty camera list is None (no camera
            ticked: all).

        Raises:
            LimitExceeded: more hits or cameras than `Limits` allows one request.
        """
        if f.k > self.limits.max_k:
            raise LimitExceeded(f"k is {f.k}; at most {self.limits.max_k} hits per request")
        camera = f.camera
        if isinstance(camera, list):
            if len(camera) > self.limits.max_cameras:
                raise LimitExceeded(f"{len(camera)} cameras named; at most {self.limits.max_cameras}")
            camera = camera or None  # no camera ticked: all of them
        return {"k": f.k, "camera": camera, "since": f.since, "until": f.until, "per_track": f.per_track,
                "min_quality": f.min_quality}

    @staticmethod
    def validate(filters: dict) -> None:
        """The SDK's one validator of k and filters (`sen_infer.query.check_filters`), so the service
        refuses exactly what the SDK and the CLI refuse, before any work is done.

        Args:
            filters: what `filters` returned.

        Raises:
            QueryError: a k, camera, since or until that cannot select anything meaningful.
        """
        check_filters(filters["k"], filters["camera"], filters["since"], filters["until"], filters.get("min_quality"))

    def row(self, key: int) -> Row:
        """The stored row `key`.

        Raises:
            UnknownKey: no such row in the gallery (a 404).
        """
        row = self.gallery.rows([key]).get(key)
        if row is None:
            raise UnknownKey(f"no row with key {key} in the gallery")
        return row

    def crop_file(self, row: Row) -> Path:
        """The stored crop of `row`. Paths are recorded as the ingest saw them; a gallery moved or opened
        from another directory is found again under its own crops/ folder.

        Raises:
            FrameUnavailable: the crop is in neither place (a 410).
        """
        if row.crop_path:
            path = Path(row.crop_path)
            if path.is_absolute() and path.is_file():
                return path
            parts = path.parts
            if "crops" in parts:
                moved = self.gallery.dir.joinpath(*parts[len(parts) - parts[::-1].index("crops") - 1:])
                if moved.is_file():
                    return moved
        raise FrameUnavailable(f"the stored crop of row {row.key} is missing from the gallery")

    @staticmethod
    def who(key: Key | None) -> str:
        """The name an audit line gives the caller: its key's name, or "local" on a service without keys."""
        return key.name if key is not None else "local"

    def audit_request(self, request: Request, key: Key | None, status: int, who: str | None = None,
                      **fields) -> None:
        """One audit line for a request: who (the key's name, "local" without keys), role, client, route.
        A 401 (no valid key: anyone can send those) is written within the client's `RefusalBudget`,
        counted past it; whatever a valid key does is always written (its holder is named, and can be
        revoked)."""
        client = request.client.host if request.client else None
        if status == 401 and not self.refusals.admit(client):
            return
        self.refusals.flush()
        self.audit.record(who=who or self.who(key), role=key.role if key else None, client=client,
                          route=request.url.path, **fields, status=status)

    def audit_refusal(self, client: str | None, route: str, status: int, who: str = "-", **fields) -> None:
        """The audit line of a request refused before it became a `Request` (no valid key: the
        `Authenticate` middleware), within the client's `RefusalBudget`."""
        if self.refusals.admit(client):
            self.audit.record(who=who, role=None, client=client, route=route, **fields, status=status)

    def audit_early(self, scope: dict, status: int, line: str) -> None:
        """The audit line of a search refused by the body limits before FastAPI saw it (a Content-Length
        over the limit): the key the `Authenticate` middleware found, the client, the route, the error."""
        if not scope["path"].startswith(f"{API}/query"):
            return
        key = scope.get("state", {}).get("key")
        client = scope.get("client")
        self.audit.record(who=self.who(key) if key or not self.gate.enabled else "-", role=key.role if key else None,
                          client=client[0] if client else None, route=scope["path"], error=line, status=status)

    def audit_search(self, request: Request, key: Key | None, what: dict, filters: dict, status: int,
                     hits: int | None = None, error: str | None = None, started: float | None = None) -> None:
        """The audit line of a search, answered or refused: what was searched for, with which filters
        (those given), how many hits or which error, and how long it took."""
        extra = {"hits": hits, "error": error,
                 "ms": None if started is None else round((time.perf_counter() - started) * 1000, 1)}
        self.audit_request(request, key, status, **what,
                           filters={k: v for k, v in filters.items() if v is not None},
                           **{k: v for k, v in extra.items() if v is not None})


def version() -> str:
    """The installed package's version, shown by the API (`info`, the OpenAPI schema); "unknown" when
    running from a source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("sen-person-search")
    except PackageNotFoundError:
        return "unknown"
