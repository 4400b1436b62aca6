"""Searches: by description (POST /query), and by example (POST /query/image: a stored row's key as JSON,
"find similar", or an uploaded picture as a form). Every search is audited, answered or refused.

The text and find-similar handlers are plain `def`s, which FastAPI runs on its worker threads; the SDK is
thread-safe and batches concurrent searches, so many operators share one model and one gallery. The image
route reads JSON or a form itself, so it is `async` and sends the encoding to a worker thread.
Handlers say why in comments: FastAPI publishes a handler's docstring in the OpenAPI schema.
"""

from __future__ import annotations

import hashlib
import time

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from sen_infer.errors import SenInferError
from sen_infer.serve.auth import Key
from sen_infer.serve.deps import ServiceDep, ViewerKey
from sen_infer.serve.errors import FormFieldError, LimitExceeded, UnsupportedUpload, UploadError, status_of
from sen_infer.serve.schemas import API, LIMITS, Filters, QueryOut, SimilarQuery, TextQuery, hit_json, shows_paths
from sen_infer.serve.service import Service

router = APIRouter(prefix=API, tags=["search"])
UPLOAD_PATH = f"{API}/query/image"  # the one route whose body may be a picture (`Limits.max_upload`)
FORM_FIELDS = ("image", "k", "camera", "since", "until", "per_track", "min_quality")

def _form_schema() -> dict:
    """The multipart upload's fields: the picture, and the filters with the bounds `Filters` states (a
    camera is a repeated text field rather than a string or a list)."""
    props = {name: {k: v for k, v in spec.items() if k != "title"}
             for name, spec in Filters.model_json_schema()["properties"].items()}
    props["camera"] = {"type": "array", "items": {"type": "string"}, "maxItems": LIMITS.max_cameras,
                       "description": "camera names (repeat the field): rows of any of them"}
    image = {"type": "string", "format": "binary", "description": "a JPEG or PNG picture"}
    return {"type": "object", "required": ["image"], "properties": {"image": image, **props}}


# The image route reads its body itself (JSON or a form), so its request body is described here.
IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": SimilarQuery.model_json_schema()},
    "multipart/form-data": {"schema": _form_schema(),
                            "encoding": {"image": {"contentType": "image/jpeg, image/png"}}}}}}


class SearchAudit:
    """One search's audit line, written once however the search ends: the handler fills in `what` was
    searched for and the `filters` as it learns them; a refusal (an SDK or service error) leaving the
    `with` block is audited with its status, an answer by `answer`."""

    def __init__(self, svc: Service, request: Request, key: Key | None, what: dict | None = None,
                 filters: dict | None = None):
        self.svc, self.request, self.key = svc, request, key
        self.what, self.filters = what or {}, filters or {}
        self.started = time.perf_counter()

    def __enter__(self) -> SearchAudit:
        return self

    def __exit__(self, kind, error, trace) -> bool:
        if isinstance(error, SenInferError):
            self.svc.audit_search(self.request, self.key, self.what, self.filters, status_of(error),
                                  error=str(error), started=self.started)
        return False  # the error goes on to its handler

    def answer(self, hits: list) -> dict:
        """Audits the answered search and returns its body (`QueryOut`)."""
        self.svc.audit_search(self.request, self.key, self.what, self.filters, 200, hits=len(hits),
                              started=self.started)
        return {"hits": [hit_json(h, shows_paths(self.key)) for h in hits],
                "took_ms": (time.perf_counter() - self.started) * 1000}


# Search by description. The query's length is the service's limit; an empty one is the SDK's refusal.
@router.post("/query", response_model=QueryOut, summary="Search by description")
def query(body: TextQuery, request: Request, svc: ServiceDep, caller: ViewerKey):
    # the filters as asked; replaced by the checked ones below
    with SearchAudit(svc, request, caller, {"text": body.text}, body.model_dump(exclude={"text"})) as search:
        if len(body.text) > svc.limits.max_text:
            raise LimitExceeded(f"the query is {len(body.text)} characters; at most {svc.limits.max_text}")
        search.filters = svc.filters(body)
        svc.validate(search.filters)
        hits = svc.retriever.query(body.text, **search.filters)
    return search.answer(hits)


@router.post("/query/image", response_model=QueryOut, summary="Search by example", openapi_extra=IMAGE_BODY)
async def query_image(request: Request, svc: ServiceDep, caller: ViewerKey):
    """JSON `{"key": KEY, ...filters}` finds people like a stored crop ("find similar"); a multipart
    upload with an `image` field finds people like the picture."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with SearchAudit(svc, request, caller) as search:
        if kind == "application/json":
            hits = await _similar(request, svc, search)
        elif kind == "multipart/form-data":
            hits = await _upload(request, svc, search)
        else:
            raise UnsupportedUpload("send JSON {\"key\": KEY, ...} or multipart/form-data with an 'image' file")
    return search.answer(hits)


async def _similar(request: Request, svc: Service, search: SearchAudit) -> list:
    """Find similar: the stored row's own embedding is the query."""
    try:
        body = SimilarQuery.model_validate_json(await request.body())
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None
    search.what = {"similar_to": body.key}
    search.filters = body.model_dump(exclude={"key"})  # as asked, for the audit line if the limits refuse them
    search.filters = svc.filters(body)
    svc.validate(search.filters)
    return await run_in_threadpool(svc.retriever.query_similar, body.key, **search.filters)


async def _upload(request: Request, svc: Service, search: SearchAudit) -> list:
    """Find by example: the uploaded picture is audited by its SHA-1 and size, never stored."""
    form = await request.form(max_files=1, max_fields=svc.limits.max_cameras + 8)
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise UploadError("multipart field 'image' (a JPEG or PNG file) is required")
    data = await upload.read()
    search.what = {"image": f"upload sha1:{hashlib.sha1(data).hexdigest()} ({len(data)} bytes)"}
    search.filters = svc.filters(form_filters(form))
    img = await svc.decoder.decode(data)  # on the decoder's threads, within its memory budget
    svc.validate(search.filters)  # after the picture's checks: a bad picture is named before a bad filter
    return await run_in_threadpool(svc.retriever.query_image, img, **search.filters)


def form_filters(form) -> Filters:
    """The filters of a multipart upload (text fields) as `Filters`, validated like a JSON body's.

    Args:
        form: the parsed form (Starlette's `FormData`).

    Returns:
        The filters; fields not given keep their defaults.

    Raises:
        FormFieldError: an unknown field, a repeated one, or one that is not of its kind (a 422).
        RequestValidationError: a value its schema refuses (k < 1), answered like a JSON body's.
    """
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise FormFieldError(f"form field {unknown[0]}: not a field of this request ({', '.join(FORM_FIELDS)})")
    for name in ("k", "since", "until", "per_track", "min_quality"):
        if len(form.getlist(name)) > 1:
            raise FormFieldError(f"form field {name}: given {len(form.getlist(name))} times")
    raw: dict = {}
    for name, (convert, kind) in _CONVERT.items():
        value = form.get(name)
        if value in (None, ""):
            continue
        try:
            raw[name] = convert(value)
        except (TypeError, ValueError):
            raise FormFieldError(f"form field {name}: {str(value)[:40]!r} is not {kind}") from None
    cams = [c for c in form.getlist("camera") if isinstance(c, str) and c]
    if cams:
        raw["camera"] = cams
    try:
        return Filters.model_validate(raw)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


def _form_bool(value) -> bool:
    """A form's checkbox or flag: true/false, 1/0, on/off; anything else is a ValueError, not False."""
    text = str(value).lower()
    if text not in ("true", "false", "1", "0", "on", "off"):
        raise ValueError(text)
    return text in ("true", "1", "on")


# a form field's text -> its value, and what the field must be (for the 422 line)
_CONVERT = {"k": (int, "an integer"), "since": (float, "a number"), "until": (float, "a number"),
            "per_track": (_form_bool, "true or false"), "min_quality": (float, "a number")}
