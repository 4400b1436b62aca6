"""The probes of an orchestrator or load balancer. They need no key: they tell nothing about the footage.

Handlers say why in comments: FastAPI publishes a handler's docstring in the OpenAPI schema.
"""

from __future__ import annotations

import numpy as np
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


# Readiness: the gallery can answer a query. A probe search (a fixed unit vector, k=1, unfiltered) walks what
# /query walks after the text encoder: every shard a query selects, their columns and indexes. A broken
# database, a shard that cannot be opened or an index that cannot be read fails here, a 503, so a load
# balancer stops sending queries that would fail. The vector is fixed so a probe never costs an encoder run.
@router.get("/readyz")
def readyz(svc: ServiceDep):
    try:
        probe = np.zeros(svc.gallery.dim, np.float32)
        probe[0] = 1.0
        svc.gallery.nearest(probe, k=1)
        rows = len(svc.gallery)
    except SenInferError as e:
        raise NotReady(f"not ready: {e}") from None
    return {"ready": True, "rows": rows}
