"""The evidence behind a hit, by row key only: its stored crop, its full frame with the box drawn, and the
row with its track and camera neighbours. No path from a request ever reaches the file system: the key
is an integer, and the files are those the gallery recorded for it.

Handlers say why in comments: FastAPI publishes a handler's docstring in the OpenAPI schema.
"""

from __future__ import annotations

import cv2
from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from sen_infer.errors import UnknownKey
from sen_infer.serve.deps import ServiceDep, ViewerKey
from sen_infer.serve.errors import FrameUnavailable
from sen_infer.serve.schemas import API, RowKey, hit_json, shows_paths, source_name

router = APIRouter(prefix=API, tags=["evidence"])
PRIVATE = {"Cache-Control": "private, max-age=3600"}  # a row's evidence never changes; shared caches keep none


# The stored crop as JPEG: the file itself when it is one, re-encoded when the ingest kept another format.
@router.get("/crops/{key}.jpg", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}},
            summary="A row's stored crop")
def crop(key: RowKey, svc: ServiceDep, caller: ViewerKey):
    path = svc.crop_file(svc.row(key))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return FileResponse(path, media_type="image/jpeg", headers=PRIVATE)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    ok, buf = (False, None) if img is None else cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise FrameUnavailable(f"the stored crop of row {key} cannot be read")
    return Response(buf.tobytes(), media_type="image/jpeg", headers=PRIVATE)


# The full frame, decoded from the source only while it is the very file the row came from (`frames.py`).
@router.get("/frames/{key}.jpg", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 410: {"description": "the source is gone or changed"}},
            summary="The full frame of a row, its box drawn")
def frame(key: RowKey, svc: ServiceDep, caller: ViewerKey):
    row = svc.row(key)
    record = svc.gallery.source_record(row) if row.frame >= 0 else None
    jpeg = svc.frames.render(row, record)
    return Response(jpeg, media_type="image/jpeg", headers=PRIVATE)


# A row in its context: the rest of its track, and what its camera saw around the same time.
@router.get("/rows/{key}", summary="A row with its track and camera neighbours")
def row_context(key: RowKey, svc: ServiceDep, caller: ViewerKey):
    row = svc.row(key)
    try:
        track, nearby = svc.gallery.context(key)
    except KeyError:
        raise UnknownKey(f"no row with key {key} in the gallery") from None
    rows = svc.gallery.rows(track + nearby)
    record = svc.gallery.source_record(row)  # its names: the path it was ingested from, then its aliases
    full = shows_paths(caller)
    names = [source_name(name, full) for name in (record or {}).get("names", [row.source])]
    return {"row": hit_json(row, full), "names": names,
            "track": [hit_json(rows[k], full) for k in track if k in rows],
            "nearby": [hit_json(rows[k], full) for k in nearby if k in rows]}
