"""The search service: FastAPI routes over one `Retriever`, under /api/v1, plus the search page at /.

Handlers that encode or search are plain `def`s, which FastAPI runs on its worker threads; the SDK is
thread-safe and batches concurrent searches (`store._Batcher`), so many operators share one model and
one gallery. Every answer that is not a success is JSON {"error": "one line"}; no traceback leaves it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import cv2
from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from sen_infer.errors import BackendUnavailable, GalleryError, QueryError, SenInferError, UnknownKey
from sen_infer.query import Retriever
from sen_infer.serve.audit import AuditLog
from sen_infer.serve.auth import Gate, Key, gate_for
from sen_infer.serve.frames import FrameRenderer, FrameUnavailable
from sen_infer.serve.images import UploadError, decode_upload
from sen_infer.serve.limits import BodyLimit, BodyTooLarge, Limits
from sen_infer.serve.origin import LOOPBACK_NAMES, SameOrigin
from sen_infer.store import Row

log = logging.getLogger("sen_infer.serve")
MAX_KEY = (1 << 63) - 1  # SQLite's INTEGER; a larger number is a 422, not an overflow deep inside
RowKey = Annotated[int, PathParam(ge=0, le=MAX_KEY, description="a row's key (a hit's `key`)")]
STATIC = Path(__file__).parent / "static"
API = "/api/v1"


@dataclass
class ServeConfig:
    engine: Path
    gallery: Path | None = None  # default: ENGINE/gallery
    host: str = "127.0.0.1"
    port: int = 8080
    keys: Path | None = None  # a key file (`sen_infer keys add`); required off loopback
    audit: Path | None = None  # default: GALLERY/audit.jsonl
    backend: str = "auto"
    verify: bool = True
    limits: Limits = field(default_factory=Limits)
    frame_cache: int = 64  # rendered frames kept in memory


# ---- request and response bodies (also the OpenAPI schema at /docs) -------------------------------
class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    k: int = Field(20, ge=1, description="hits to return (at most limits.max_k)")
    camera: str | list[str] | None = Field(None, description="a camera name, or a list (rows of any of them)")
    since: float | None = Field(None, description="earliest time, seconds on the gallery's clock")
    until: float | None = Field(None, description="latest time, seconds on the gallery's clock")
    per_track: bool = Field(True, description="at most one hit per track")


class TextQuery(Filters):
    text: str = Field(..., min_length=1, description="a description of the person")


class SimilarQuery(Filters):
    key: int = Field(..., ge=0, le=(1 << 63) - 1, description="a stored row's key: find people who look like it")


class HitOut(BaseModel):
    key: int
    score: float | None
    camera: str | None
    timestamp: float | None
    frame: int
    bbox: list[int]
    track: int | None
    person: int | None
    source: str
    superseded: bool
    crop_url: str
    frame_url: str


class ErrorOut(BaseModel):
    error: str = Field(..., description="what is wrong, in one line")


class QueryOut(BaseModel):
    hits: list[HitOut]
    took_ms: float
    rows: int


def hit_json(row: Row) -> dict:
    return {"key": row.key, "score": row.score, "camera": row.camera, "timestamp": row.timestamp,
            "frame": row.frame, "bbox": [int(v) for v in row.bbox], "track": row.track, "person": row.person,
            "source": row.source, "superseded": row.superseded,
            "crop_url": f"{API}/crops/{row.key}.jpg", "frame_url": f"{API}/frames/{row.key}.jpg"}


class Service:
    """What the routes share: the retriever and gallery, the key gate, the audit log, the frame cache."""

    def __init__(self, config: ServeConfig):
        self.config, self.limits = config, config.limits
        self.gate: Gate = gate_for(config.host, config.keys)
        self.retriever = Retriever(config.engine, gallery=config.gallery, backend=config.backend, verify=config.verify)
        self.gallery = self.retriever.open_gallery(create=False)  # serving a path with no gallery is an error
        self.audit = AuditLog(config.audit if config.audit is not None else self.gallery.dir / "audit.jsonl")
        self.frames = FrameRenderer(config.frame_cache)
        self.started = time.time()

    def check_filters(self, f: Filters) -> dict:
        if f.k > self.limits.max_k:
            raise QueryError(f"k is {f.k}; at most {self.limits.max_k} hits per request")
        camera = f.camera
        if isinstance(camera, list):
            if len(camera) > self.limits.max_cameras:
                raise QueryError(f"{len(camera)} cameras named; at most {self.limits.max_cameras}")
            camera = camera or None  # no camera ticked: all of them
        return {"k": f.k, "camera": camera, "since": f.since, "until": f.until, "per_track": f.per_track}

    def row(self, key: int) -> Row:
        row = self.gallery.rows([key]).get(key)
        if row is None:
            raise UnknownKey(f"no row with key {key} in the gallery")
        return row

    def crop_file(self, row: Row) -> Path:
        """The stored crop of `row`. Paths are recorded as the ingest saw them; a gallery moved or opened
        from another directory is found again under its own crops/ folder."""
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

    def who(self, key: Key | None) -> str:
        return key.name if key is not None else "local"

    def audit_request(self, request: Request, key: Key | None, status: int, who: str | None = None,
                      **fields) -> None:
        """One audit line for a request: who (the key's name, "local" without keys), role, client, route."""
        self.audit.record(who=who or self.who(key), role=key.role if key else None,
                          client=request.client.host if request.client else None, route=request.url.path,
                          **fields, status=status)

    def audit_search(self, request: Request, key: Key | None, what: dict, filters: dict, status: int,
                     hits: int | None = None, error: str | None = None, started: float | None = None) -> None:
        extra = {"hits": hits, "error": error,
                 "ms": None if started is None else round((time.perf_counter() - started) * 1000, 1)}
        self.audit_request(request, key, status, **what,
                           filters={k: v for k, v in filters.items() if v is not None},
                           **{k: v for k, v in extra.items() if v is not None})


def status_of(error: Exception) -> int:
    if isinstance(error, UnknownKey):
        return 404
    if isinstance(error, FrameUnavailable):
        return 410
    if isinstance(error, (QueryError, UploadError)):
        return 400
    if isinstance(error, (GalleryError, BackendUnavailable)):
        return 503
    return 400


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_line(errors) -> tuple[int, str]:
    """A pydantic error list as (status, one line): malformed JSON is a 400, a wrong field a 422."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON body: {first.get('ctx', {}).get('error', 'cannot parse it')}"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{where}: {first.get('msg', 'invalid')}{more}"


def create_app(config: ServeConfig, service: Service | None = None) -> FastAPI:
    """The ASGI app (wrapped in the body-size limit). Opens the engine and gallery now, so a server that
    starts is one that can answer."""
    svc = service or Service(config)
    limits = svc.limits
    error = {"model": ErrorOut}
    app = FastAPI(title="SEN person search", version=_version(), docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  responses={400: error, 401: error, 403: error, 404: error, 413: error, 422: error},
                  description="Text-based person search over a gallery of camera crops. "
                              "Send `Authorization: Bearer KEY` when the service has keys.")
    app.state.service = svc

    # ---- errors: always {"error": "one line"} -------------------------------------------------------
    @app.exception_handler(SenInferError)
    async def sdk_error(request: Request, e: SenInferError):
        return _error(status_of(e), str(e))

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, e: UploadError):
        return _error(e.status, str(e))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, e: BodyTooLarge):
        audit_refused(request, 413, str(e))
        return _error(413, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        status, line = _validation_line(e.errors())
        audit_refused(request, status, line)
        return _error(status, line)

    def audit_refused(request: Request, status: int, line: str) -> None:
        """A search refused before its handler ran (malformed or invalid body, too large) is audited too."""
        if request.url.path.startswith(f"{API}/query"):
            key = getattr(request.state, "key", None)
            svc.audit_request(request, key, status, who="-" if key is None and svc.gate.enabled else None,
                              error=line)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        if e.status_code in (400, 413):  # a body that could not be read or parsed (401/403 are audited apart)
            audit_refused(request, e.status_code, str(e.detail))
        return _error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal error; the server log has the details")

    # ---- access ------------------------------------------------------------------------------------
    bearer = HTTPBearer(auto_error=False, description="an API key from `python -m sen_infer keys add`")

    def access(role: str):
        # `bearer` declares the scheme in the OpenAPI schema (the docs' Authorize button); the header
        # itself is checked here, so a malformed one is a 401 like a missing one
        async def check(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Key | None:
            if not svc.gate.enabled:
                return None
            key = svc.gate.identify(request.headers.get("authorization"))
            if key is None:
                svc.audit_request(request, None, 401, who="-")
                raise HTTPException(401, "a valid API key is required: send the header 'Authorization: Bearer KEY'",
                                    headers={"WWW-Authenticate": "Bearer"})
            request.state.key = key
            if role == "admin" and key.role != "admin":
                svc.audit_request(request, key, 403)
                raise HTTPException(403, f"key {key.name!r} has the role {key.role}; this needs admin")
            return key
        return Depends(check)

    viewer, admin = access("viewer"), access("admin")

    # ---- search ------------------------------------------------------------------------------------
    @app.post(f"{API}/query", response_model=QueryOut, tags=["search"], summary="Search by description")
    def query(body: TextQuery, request: Request, key: Key | None = viewer):
        t0 = time.perf_counter()
        what = {"text": body.text}
        filters = body.model_dump(exclude={"text"})  # as asked; replaced by the checked ones below
        try:
            if len(body.text) > limits.max_text:
                raise QueryError(f"the query is {len(body.text)} characters; at most {limits.max_text}")
            filters = svc.check_filters(body)
            hits = svc.retriever.query(body.text, **filters)
        except SenInferError as e:
            svc.audit_search(request, key, what, filters, status_of(e), error=str(e), started=t0)
            raise
        svc.audit_search(request, key, what, filters, 200, hits=len(hits), started=t0)
        return {"hits": [hit_json(h) for h in hits], "took_ms": (time.perf_counter() - t0) * 1000,
                "rows": len(svc.gallery)}

    @app.post(f"{API}/query/image", response_model=QueryOut, tags=["search"], summary="Search by example",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": SimilarQuery.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                      "image": {"type": "string", "format": "binary", "description": "a JPEG or PNG"},
                      "k": {"type": "integer"}, "camera": {"type": "array", "items": {"type": "string"}},
                      "since": {"type": "number"}, "until": {"type": "number"},
                      "per_track": {"type": "boolean"}}}}}}})
    async def query_image(request: Request, key: Key | None = viewer):
        """JSON `{"key": KEY, ...filters}` finds people like a stored crop ("find similar"); a multipart
        upload with an `image` field finds people like the picture."""
        t0 = time.perf_counter()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        what, filters = {}, {}
        try:
            if kind == "application/json":
                try:
                    body = SimilarQuery.model_validate_json(await request.body())
                except ValidationError as e:
                    raise RequestValidationError(e.errors()) from None
                what = {"similar_to": body.key}
                filters = body.model_dump(exclude={"key"})
                filters = svc.check_filters(body)
                hits = await run_in_threadpool(svc.retriever.query_similar, body.key, **filters)
            elif kind == "multipart/form-data":
                form = await request.form(max_files=1, max_fields=limits.max_cameras + 8)
                upload = form.get("image")
                if not isinstance(upload, UploadFile):
                    raise UploadError(400, "multipart field 'image' (a JPEG or PNG file) is required")
                data = await upload.read()
                what = {"image": f"upload sha1:{hashlib.sha1(data).hexdigest()} ({len(data)} bytes)"}
                filters = svc.check_filters(_form_filters(form))
                img = decode_upload(data)
                hits = await run_in_threadpool(svc.retriever.query_image, img, **filters)
            else:
                raise UploadError(415, "send JSON {\"key\": KEY, ...} or multipart/form-data with an 'image' file")
        except (SenInferError, UploadError) as e:
            svc.audit_search(request, key, what, filters, status_of(e) if isinstance(e, SenInferError) else e.status,
                             error=str(e), started=t0)
            raise
        svc.audit_search(request, key, what, filters, 200, hits=len(hits), started=t0)
        return {"hits": [hit_json(h) for h in hits], "took_ms": (time.perf_counter() - t0) * 1000,
                "rows": len(svc.gallery)}

    # ---- evidence: files by key only ---------------------------------------------------------------
    @app.get(f"{API}/crops/{{key}}.jpg", tags=["evidence"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}}, summary="A row's stored crop")
    def crop(key: RowKey, key_: Key | None = viewer):
        path = svc.crop_file(svc.row(key))
        if path.suffix.lower() in (".jpg", ".jpeg"):
            return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        ok, buf = (False, None) if img is None else cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise FrameUnavailable(f"the stored crop of row {key} cannot be read")
        return Response(buf.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get(f"{API}/frames/{{key}}.jpg", tags=["evidence"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 410: {"description": "the source is gone or changed"}},
             summary="The full frame of a row, its box drawn")
    def frame(key: RowKey, key_: Key | None = viewer):
        row = svc.row(key)
        record = svc.gallery.source_record(row) if row.frame >= 0 else None
        jpeg = svc.frames.render(row, record)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get(f"{API}/rows/{{key}}", tags=["evidence"], summary="A row with its track and camera neighbours")
    def row_context(key: RowKey, key_: Key | None = viewer):
        row = svc.row(key)
        try:
            track, nearby = svc.gallery.context(key)
        except KeyError:
            raise UnknownKey(f"no row with key {key} in the gallery") from None
        rows = svc.gallery.rows(track + nearby)
        return {"row": hit_json(row), "track": [hit_json(rows[k]) for k in track if k in rows],
                "nearby": [hit_json(rows[k]) for k in nearby if k in rows]}

    # ---- the gallery -------------------------------------------------------------------------------
    @app.get(f"{API}/cameras", tags=["gallery"], summary="Cameras with their row counts and time spans")
    def cameras(key_: Key | None = viewer):
        return {"cameras": svc.gallery.camera_summary()}

    @app.get(f"{API}/info", tags=["gallery"], summary="Model, backend, gallery size and limits")
    def info(key_: Key | None = viewer):
        stats = svc.gallery.stats()
        m = svc.retriever.encoders.manifest
        return {"model": m.model_name, "fingerprint": m.fingerprint[:12], "embed_dim": m.embed_dim,
                "backend": svc.retriever.backend, "rows": stats["rows"], "tracks": stats["tracks"],
                "sources": stats["sources"], "cameras": stats["cameras"], "time_span": stats["time_span"],
                "damaged_rows": stats["damaged_rows"], "auth": svc.gate.enabled,
                "limits": limits.__dict__, "version": _version(), "started": svc.started}

    @app.get(f"{API}/audit", tags=["admin"], summary="The last audit records (admin keys only)")
    def audit(request: Request, limit: int = 100, key_: Key | None = admin):
        if not 1 <= limit <= limits.max_audit:
            raise QueryError(f"limit must be between 1 and {limits.max_audit}")
        lines = svc.audit.tail(limit)
        svc.audit_request(request, key_, 200, lines=len(lines))  # reading the log is logged
        return {"lines": lines}

    # ---- probes (no key: they tell nothing about the footage) ---------------------------------------
    @app.get(f"{API}/healthz", tags=["probes"])
    def healthz():
        return {"ok": True}

    @app.get(f"{API}/readyz", tags=["probes"])
    def readyz():
        try:
            rows = len(svc.gallery)  # reads the gallery's state: a broken database fails here
        except SenInferError as e:
            return _error(503, f"not ready: {e}")
        return {"ready": True, "rows": rows}

    # ---- the page and the API docs (vendored, nothing fetched from the internet) -------------------
    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": _CSP})

    app.mount("/static", RevalidatedFiles(directory=STATIC), name="static")
    _mount_docs(app)
    hosts = LOOPBACK_NAMES if not svc.gate.enabled else None  # without keys, loopback names only
    return SameOrigin(BodyLimit(app, limits, upload_paths=(f"{API}/query/image",)), hosts)


class RevalidatedFiles(StaticFiles):
    """The page's script and style, revalidated on every load (ETag: a 304 costs nothing), so a browser
    never pairs a new index.html with an old app.js after an upgrade."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


# The page loads its own script and style only; images are blob: URLs made from authorised fetches.
_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _form_filters(form) -> Filters:
    """The filters of a multipart upload (text fields) as Filters, one 422 line when one is malformed."""
    unknown = sorted(set(form.keys()) - {"image", "k", "camera", "since", "until", "per_track"})
    if unknown:
        raise UploadError(422, f"form field {unknown[0]}: not a field of this request (image, k, camera, since, "
                               f"until, per_track)")
    for name in ("k", "since", "until", "per_track"):
        if len(form.getlist(name)) > 1:
            raise UploadError(422, f"form field {name}: given {len(form.getlist(name))} times")
    raw: dict = {}
    convert = {"k": int, "since": float, "until": float, "per_track": _form_bool}
    for name, kind in convert.items():
        value = form.get(name)
        if value in (None, ""):
            continue
        try:
            raw[name] = kind(value)
        except (TypeError, ValueError):
            raise UploadError(422, f"form field {name}: {str(value)[:40]!r} is not {_KIND[name]}") from None
    cams = [c for c in form.getlist("camera") if isinstance(c, str) and c]
    if cams:
        raw["camera"] = cams
    try:
        return Filters.model_validate(raw)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


_KIND = {"k": "an integer", "since": "a number", "until": "a number", "per_track": "true or false"}


def _form_bool(value) -> bool:
    text = str(value).lower()
    if text not in ("true", "false", "1", "0", "on", "off"):
        raise ValueError(text)
    return text in ("true", "1", "on")


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the fastapi-offline package's copy of swagger-ui 5 (OpenAPI 3.1, which
    FastAPI writes; swagger-ui 4 cannot render it), served here: offline sites have no CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import fastapi_offline
        files = Path(fastapi_offline.__file__).parent / "static"
    except ImportError:
        files = None
    if files is not None and (files / "swagger-ui-bundle.js").is_file():
        app.mount("/docs-static", StaticFiles(directory=files), name="docs-static")
        js, css = "/docs-static/swagger-ui-bundle.js", "/docs-static/swagger-ui.css"
    else:  # FastAPI's defaults (a CDN): works where the browser has internet access
        js, css = ("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js",
                   "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="SEN person search API",
                                   swagger_js_url=js, swagger_css_url=css, swagger_favicon_url="/static/favicon.svg")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sen-person-search")
    except PackageNotFoundError:
        return "unknown"
