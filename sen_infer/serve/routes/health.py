"""The probes of an orchestrator or load balancer. They need no key: they tell nothing about the footage.

Handlers say why in comments: FastAPI publishes a handler's docstring in the OpenAPI schema.
"""

from __future__ import annotations

from fastapi import APIRouter

from sen_infer.errors import SenInferError
from sen_infer.serve.deps import ServiceDep
from sen_infer.serve.errors import NotReady
from sen_infer.serve.schemas import API

router = APIRouter(prefix=API, tags=["probes"])


# Liveness: the process answers.
@router.get("/healthz")
def healthz():
    return {"ok": True}


# Readiness: the gallery can be read (a broken database fails here, a 503).
@router.get("/readyz")
def readyz(svc: ServiceDep):
    try:
        rows = len(svc.gallery)  # reads the gallery's state
    except SenInferError as e:
        raise NotReady(f"not ready: {e}") from None
    return {"ready": True, "rows": rows}
