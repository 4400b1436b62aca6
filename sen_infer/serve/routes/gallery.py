"""What the gallery holds (cameras, size, time span) and what serves it (model, backend, limits): what the
search page needs to offer its filters, and what an operator checks first.

Handlers say why in comments: FastAPI publishes a handler's docstring in the OpenAPI schema.
"""

from __future__ import annotations

from fastapi import APIRouter

from sen_infer.serve.deps import ServiceDep, ViewerKey
from sen_infer.serve.schemas import API
from sen_infer.serve.service import version

router = APIRouter(prefix=API, tags=["gallery"])


# The camera filter's choices: each camera with its row count and first/last time.
@router.get("/cameras", summary="Cameras with their row counts and time spans")
def cameras(svc: ServiceDep, caller: ViewerKey):
    return {"cameras": svc.gallery.camera_summary()}


# The service at a glance: the model and backend answering, the gallery's size, the limits in force.
@router.get("/info", summary="Model, backend, gallery size and limits")
def info(svc: ServiceDep, caller: ViewerKey):
    stats = svc.gallery.stats()
    m = svc.retriever.encoders.manifest
    return {"model": m.model_name, "fingerprint": m.fingerprint[:12], "embed_dim": m.embed_dim,
            "backend": svc.retriever.backend, "rows": stats["rows"], "tracks": stats["tracks"],
            "sources": stats["sources"], "cameras": stats["cameras"], "time_span": stats["time_span"],
            "damaged_rows": stats["damaged_rows"], "auth": svc.gate.enabled,
            "limits": svc.limits.__dict__, "version": version(), "started": svc.started}
